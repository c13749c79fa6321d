//! Partial restore and listing a copy: `restore --path PATTERN` picks members of a folder
//! copy, `backup ls` lists them (through `decode::walk_tar`), both streaming (nothing is
//! unpacked first).
//!
//! A pattern selects a member when its path components are a prefix of the member's (after
//! `./` and leading or trailing `/` are dropped), as GNU tar selects members named on its
//! command line: `etc/nginx` is that directory and everything below it, `etc/hosts` that
//! file. Members not selected are read past and never written, so an unsafe member that is
//! not selected cannot do anything; the selected ones go through the same checks as a full
//! restore.

use std::io;

/// The members a restore is limited to; empty selects everything.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    patterns: Vec<(String, Vec<Vec<u8>>)>,
    hits: Vec<bool>,
}

/// Path components as the unpacker counts them (`.` and empty ones dropped).
fn components(raw: &[u8]) -> Vec<Vec<u8>> {
    raw.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

impl Selection {
    /// The selection of `paths`; a pattern with `..` or no name is refused, naming it.
    pub(crate) fn new(paths: &[String]) -> Result<Selection, String> {
        let mut patterns = Vec::new();
        for p in paths {
            let c = components(p.as_bytes());
            if c.is_empty() || c.iter().any(|c| c == b"..") {
                return Err(format!(
                    "--path {p:?}: not a member path (name a file or directory of the copy, \
                     e.g. etc/nginx)"
                ));
            }
            patterns.push((p.clone(), c));
        }
        let hits = vec![false; patterns.len()];
        Ok(Selection { patterns, hits })
    }

    /// Whether every member is wanted.
    pub(crate) fn everything(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the member named `raw` is wanted; records which patterns matched.
    pub(crate) fn wants(&mut self, raw: &[u8]) -> bool {
        if self.everything() {
            return true;
        }
        let member = components(raw);
        let mut wanted = false;
        for (i, (_, pattern)) in self.patterns.iter().enumerate() {
            if member.len() >= pattern.len() && member[..pattern.len()] == pattern[..] {
                self.hits[i] = true;
                wanted = true;
            }
        }
        wanted
    }

    /// The patterns that matched no member.
    pub(crate) fn unmatched(&self) -> Vec<&str> {
        self.patterns
            .iter()
            .zip(&self.hits)
            .filter(|(_, hit)| !**hit)
            .map(|((p, _), _)| p.as_str())
            .collect()
    }
}

/// One member of a folder copy, as `backup ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `-` file, `d` directory, `l` symlink, `h` hard link, `c`/`b` device, `p` FIFO, `?`.
    pub kind: char,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: Option<u64>,
    /// The path as stored (cut at no byte: invalid UTF-8 shown as U+FFFD).
    pub path: String,
    /// A link's target.
    pub link: Option<String>,
}

impl Member {
    /// The member `entry` describes (its data is not read).
    pub(super) fn of<R: io::Read>(entry: &tar::Entry<'_, R>) -> Member {
        let header = entry.header();
        let t = header.entry_type();
        let kind = if t.is_file() {
            '-'
        } else if t.is_dir() {
            'd'
        } else if t.is_symlink() {
            'l'
        } else if t.is_hard_link() {
            'h'
        } else if t.is_character_special() {
            'c'
        } else if t.is_block_special() {
            'b'
        } else if t.is_fifo() {
            'p'
        } else {
            '?'
        };
        Member {
            kind,
            size: header.size().unwrap_or(0),
            mtime: header.mtime().ok(),
            path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            link: entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Selection;

    #[test]
    fn patterns_select_a_file_or_a_directory_and_below() {
        let mut s = Selection::new(&["etc/nginx/".into(), "./srv/www/index.html".into()]).unwrap();
        assert!(s.wants(b"./etc/nginx"));
        assert!(s.wants(b"./etc/nginx/conf.d/a.conf"));
        assert!(!s.wants(b"./etc/nginx2/x"));
        assert!(!s.wants(b"./etc"));
        assert!(s.wants(b"srv/www/index.html"));
        assert!(!s.wants(b"srv/www/index.html.bak"));
        assert!(s.unmatched().is_empty());
        let mut s = Selection::new(&["nope".into()]).unwrap();
        assert!(!s.wants(b"./etc/hosts"));
        assert_eq!(s.unmatched(), ["nope"]);
        for bad in ["", "/", ".", "../etc", "a/../../b"] {
            assert!(Selection::new(&[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(Selection::new(&[]).unwrap().wants(b"anything"));
    }
}
