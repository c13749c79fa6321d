//! The original's layout on a Samba share: every object is a file at the share's root named
//! `{id}-{YYYYmmddHHMMSS}.{suffixes}`, where the engine names it
//! `{id}/{YYYYmmddHHMMSS}/{id}.{suffixes}` ([`crate::naming`]). Sidecars keep their
//! `.sha256` after either name; an upload in progress is `{file}.partial` until it commits.
//!
//! [`to_share`] and [`from_share`] are inverses on the engine's names. A file at the share
//! that does not map back (the original's own `{id}-{stamp}.gpg`, partials, foreign files) is
//! not an object: listing skips it, so retention never deletes it.

use crate::naming::{self, ObjectName, RunStamp};

/// Suffix of a file being uploaded: never taken for an object.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Characters smbclient's command line or SMB itself cannot carry in a file name: `;`
/// separates commands, `"` ends the quoted name, `*`/`?` are wildcards for `del`, and the
/// rest are invalid on SMB (smbd would show them mangled).
const UNSAFE: &[char] = &[';', '"', '*', '?', '\\', ':', '<', '>', '|'];

/// The engine's name without a sidecar suffix, and whether it had one.
fn split_sidecar(name: &str) -> (&str, bool) {
    match name.strip_suffix(naming::SIDECAR_SUFFIX) {
        Some(base) => (base, true),
        None => (name, false),
    }
}

/// The share's file name of the engine's object (or sidecar) `name`; `None` for a name that
/// is not an object name or that smbclient cannot carry.
pub fn to_share(name: &str) -> Option<String> {
    let (o, sidecar) = naming::parse_stored(name)?;
    let file = o.file_name();
    // `file` is `{id}.{suffixes}`: keep the suffixes.
    let rest = file.strip_prefix(&o.source_id)?;
    let mut out = format!("{}-{}{rest}", o.source_id, o.stamp);
    if sidecar {
        out.push_str(naming::SIDECAR_SUFFIX);
    }
    if out.contains(UNSAFE) || out.chars().any(char::is_control) {
        return None;
    }
    Some(out)
}

/// The engine's name of the share's file `file`; `None` for anything that is not an object
/// or sidecar in this layout.
pub fn from_share(file: &str) -> Option<String> {
    if file.contains(UNSAFE) {
        return None;
    }
    let (base, sidecar) = split_sidecar(file);
    // `{id}-{14 digits}.{suffixes}`; the id may hold `-` and digits itself, so try every
    // `-` followed by 14 digits and a dot: only one split parses (the suffixes are words).
    let bytes = base.as_bytes();
    for (i, _) in base.match_indices('-') {
        let stamp_end = i + 15;
        if bytes.get(stamp_end) != Some(&b'.') {
            continue;
        }
        let (id, stamp, rest) = (&base[..i], &base[i + 1..stamp_end], &base[stamp_end..]);
        let Some(stamp) = RunStamp::parse(stamp) else {
            continue;
        };
        let engine = format!("{id}/{stamp}/{id}{rest}");
        if let Some(o) = ObjectName::parse(&engine) {
            let mut path = o.path();
            if sidecar {
                path.push_str(naming::SIDECAR_SUFFIX);
            }
            return Some(path);
        }
    }
    None
}

/// The share's name of the upload in progress of `file`.
pub fn partial(file: &str) -> String {
    format!("{file}{PARTIAL_SUFFIX}")
}

/// The engine's name of the object whose upload `file` is, if it is a partial.
pub fn from_partial(file: &str) -> Option<String> {
    from_share(file.strip_suffix(PARTIAL_SUFFIX)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_original_layout() {
        assert_eq!(
            to_share("db/20240102030405/db.sql.zst.gpg").as_deref(),
            Some("db-20240102030405.sql.zst.gpg")
        );
        assert_eq!(
            to_share("www/20240102030405/www.tar.gpg.sha256").as_deref(),
            Some("www-20240102030405.tar.gpg.sha256")
        );
        assert_eq!(
            from_share("db-20240102030405.sql.zst.gpg").as_deref(),
            Some("db/20240102030405/db.sql.zst.gpg")
        );
        assert_eq!(
            from_share("www-20240102030405.tar.gpg.sha256").as_deref(),
            Some("www/20240102030405/www.tar.gpg.sha256")
        );
    }

    #[test]
    fn ids_with_dashes_and_digits_round_trip() {
        for id in ["a-b", "x-20240102030405", "db-1", "-", "my db"] {
            let engine = format!("{id}/20240102030405/{id}.tar.zst.gpg");
            let share = to_share(&engine).expect("maps");
            assert_eq!(from_share(&share).as_deref(), Some(engine.as_str()), "{id}");
        }
    }

    #[test]
    fn other_files_are_not_objects() {
        for f in [
            "db-20240102030405.gpg",
            "db-20240102030405.sql.zst.gpg.partial",
            "db-20240102030405.sql.zst.gpg.sha256.partial",
            "db-2024010203040.sql",
            "db-20241302030405.sql",
            "db.sql",
            "notes.txt",
            "",
        ] {
            assert_eq!(from_share(f), None, "{f}");
        }
        assert_eq!(
            from_partial("db-20240102030405.sql.zst.gpg.partial").as_deref(),
            Some("db/20240102030405/db.sql.zst.gpg")
        );
        assert_eq!(from_partial("db-20240102030405.sql.zst.gpg"), None);
    }

    #[test]
    fn names_smbclient_cannot_carry_are_refused() {
        for id in ["a;b", "a\"b", "a*", "a:b", "a\\b"] {
            assert_eq!(
                to_share(&format!("{id}/20240102030405/{id}.tar")),
                None,
                "{id}"
            );
        }
        assert_eq!(to_share("not/an/object"), None);
        assert_eq!(to_share("db/20240102030405/other.tar"), None);
    }

    proptest! {
        #[test]
        fn engine_names_round_trip(id in "[a-zA-Z0-9 ._-]{1,20}", secs in 0u32..86_400,
                                   sidecar: bool, payload in 0..4usize, enc in 0..4usize) {
            prop_assume!(naming::valid_source_id(&id));
            let stamp = format!("20240102{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60);
            let suffix = ["", ".zst", ".gz", ".zst.gpg"][enc];
            let mut engine = format!("{id}/{stamp}/{id}.{}{suffix}", ["tar", "sql", "disk", "btrfs"][payload]);
            if sidecar {
                engine.push_str(".sha256");
            }
            let share = to_share(&engine).expect("maps");
            prop_assert!(!share.contains('/'));
            prop_assert_eq!(from_share(&share), Some(engine));
        }
    }
}
