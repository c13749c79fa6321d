//! Which copy is on which destination: the side-by-side view of `backup list`, so a copy
//! that one destination lacks stands out.
//!
//! A copy is one source's run (`{id}/{timestamp}`). Each destination's cell says whether it
//! holds that copy. An absent copy is [`Cell::Missing`] unless that destination's own
//! retention explains it ([`Cell::Expired`]): destinations often keep different numbers of
//! copies (a week on disk, a year in S3), and those gaps are by design.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::engine::retention::{self, StoredCopy};
use crate::job::RetentionPolicy;
use crate::naming::RunStamp;
use crate::restore::Listing;

/// One destination's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The destination's `id`.
    pub id: String,
    /// Its retention keys.
    pub retention: RetentionPolicy,
    /// It could not be listed: its cells are [`Cell::Unknown`].
    pub unlisted: bool,
}

/// What one destination holds of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Stored: total size of its objects, and whether each has its sha256 sidecar.
    Present { size: u64, has_sidecar: bool },
    /// Absent, as this destination's retention would have it.
    Expired,
    /// Absent, and nothing explains it.
    Missing,
    /// The destination could not be listed.
    Unknown,
}

/// One copy (source and run) across the destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub source_id: String,
    pub stamp: RunStamp,
    /// One per [`Coverage::columns`] entry, in the same order.
    pub cells: Vec<Cell>,
}

impl Row {
    /// Indices of the destinations missing this copy.
    pub fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.cells.len()).filter(|&i| self.cells[i] == Cell::Missing)
    }
}

/// Every copy of a listing across the destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub columns: Vec<Column>,
    /// By source id, newest first.
    pub rows: Vec<Row>,
}

impl Coverage {
    /// Arranges `listing` (made from the destinations of `columns`, whose `unlisted` is set
    /// here) by copy; `now` dates retention by days.
    pub fn new(listing: &Listing, mut columns: Vec<Column>, now: SystemTime) -> Self {
        for c in &mut columns {
            c.unlisted = listing.unlisted.contains(&c.id);
        }
        let mut present: BTreeMap<(String, RunStamp), Vec<Option<Cell>>> = BTreeMap::new();
        for copy in &listing.copies {
            let Some(col) = columns.iter().position(|c| c.id == copy.destination) else {
                continue;
            };
            let cells = present
                .entry((copy.name.source_id.clone(), copy.name.stamp))
                .or_insert_with(|| vec![None; columns.len()]);
            // Several objects of one run (not made by custos, but possible): sum them.
            cells[col] = Some(match cells[col] {
                Some(Cell::Present { size, has_sidecar }) => Cell::Present {
                    size: size + copy.size,
                    has_sidecar: has_sidecar && copy.has_sidecar,
                },
                _ => Cell::Present {
                    size: copy.size,
                    has_sidecar: copy.has_sidecar,
                },
            });
        }
        let explained = |source: &str, stamp: RunStamp, col: usize| {
            let policy = &columns[col].retention;
            if policy.calendar.is_active() {
                // The calendar rules depend on every copy there: ask retention itself
                // whether it would remove this one from what the destination holds.
                let mut held: Vec<StoredCopy> = present
                    .iter()
                    .filter(|((s, _), cells)| s == source && cells[col].is_some())
                    .map(|((_, t), cells)| StoredCopy {
                        timestamp: t.to_string(),
                        time: t.instant(),
                        good: matches!(
                            cells[col],
                            Some(Cell::Present {
                                has_sidecar: true,
                                ..
                            })
                        ),
                        objects: Vec::new(),
                    })
                    .collect();
                held.push(StoredCopy {
                    timestamp: stamp.to_string(),
                    time: stamp.instant(),
                    good: true,
                    objects: Vec::new(),
                });
                let verdicts = retention::decide(policy, &held, now, None, &chrono::Local);
                return verdicts.last().is_some_and(|v| v.delete);
            }
            expired(policy, stamp, now, || {
                present
                    .iter()
                    .filter(|((s, t), cells)| {
                        s == source
                            && t.instant() > stamp.instant()
                            && matches!(
                                cells[col],
                                Some(Cell::Present {
                                    has_sidecar: true,
                                    ..
                                })
                            )
                    })
                    .count()
            })
        };
        let mut rows: Vec<Row> = present
            .iter()
            .map(|((source_id, stamp), cells)| Row {
                source_id: source_id.clone(),
                stamp: *stamp,
                cells: (0..columns.len())
                    .map(|col| match cells[col] {
                        Some(c) => c,
                        None if columns[col].unlisted => Cell::Unknown,
                        None if explained(source_id, *stamp, col) => Cell::Expired,
                        None => Cell::Missing,
                    })
                    .collect(),
            })
            .collect();
        rows.sort_by(|a, b| a.source_id.cmp(&b.source_id).then(b.stamp.cmp(&a.stamp)));
        Self { columns, rows }
    }

    /// The copies missing somewhere.
    pub fn gaps(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.missing().next().is_some())
    }
}

/// Whether `policy` would have removed a copy made at `stamp` by `now`: older than
/// `retention_days` whole days, or `retention_copies` good copies newer than it exist
/// (`good_newer` counts them; called only when that rule is set).
fn expired(
    policy: &RetentionPolicy,
    stamp: RunStamp,
    now: SystemTime,
    good_newer: impl FnOnce() -> usize,
) -> bool {
    if stamp.is_future(now) {
        return false;
    }
    let age_days = now
        .duration_since(stamp.instant())
        .unwrap_or(Duration::ZERO)
        .as_secs()
        / 86_400;
    (policy.days > 0 && age_days > u64::from(policy.days))
        || (policy.copies > 0 && good_newer() >= policy.copies as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{Encoding, ObjectName, Payload};
    use crate::restore::Copy;

    fn copy(dest: &str, source: &str, stamp: &str, size: u64, sidecar: bool) -> Copy {
        Copy {
            destination: dest.into(),
            name: ObjectName {
                source_id: source.into(),
                stamp: RunStamp::parse(stamp).expect("stamp"),
                database: None,
                payload: Payload::Tar,
                encoding: Encoding::CUSTOS,
            },
            size,
            has_sidecar: sidecar,
        }
    }

    fn column(id: &str, copies: u32, days: u32) -> Column {
        Column {
            id: id.into(),
            retention: RetentionPolicy {
                copies,
                days,
                ..Default::default()
            },
            unlisted: false,
        }
    }

    fn now() -> SystemTime {
        RunStamp::parse("20240110000000").expect("stamp").instant()
    }

    #[test]
    fn a_copy_absent_on_one_destination_is_missing_there_only() {
        let listing = Listing {
            copies: vec![
                copy("a", "www", "20240102000000", 10, true),
                copy("b", "www", "20240102000000", 10, false),
                copy("a", "www", "20240101000000", 7, true),
                copy("a", "db", "20240101000000", 3, true),
                copy("b", "db", "20240101000000", 3, true),
            ],
            ..Listing::default()
        };
        let cov = Coverage::new(&listing, vec![column("a", 0, 0), column("b", 0, 0)], now());
        let view: Vec<(&str, String, &[Cell])> = cov
            .rows
            .iter()
            .map(|r| (r.source_id.as_str(), r.stamp.to_string(), &r.cells[..]))
            .collect();
        let present = |size, has_sidecar| Cell::Present { size, has_sidecar };
        assert_eq!(
            view,
            vec![
                (
                    "db",
                    "20240101000000".into(),
                    &[present(3, true), present(3, true)][..]
                ),
                (
                    "www",
                    "20240102000000".into(),
                    &[present(10, true), present(10, false)][..]
                ),
                (
                    "www",
                    "20240101000000".into(),
                    &[present(7, true), Cell::Missing][..]
                ),
            ]
        );
        let gaps: Vec<String> = cov.gaps().map(|r| r.stamp.to_string()).collect();
        assert_eq!(gaps, ["20240101000000"]);
    }

    #[test]
    fn calendar_rules_explain_gaps_too() {
        // `b` keeps one copy a day: of two runs on Jan 9 it has the newer; the older one
        // is explained there, while the Jan 8 copy it lacks is missing (it would keep it).
        // (It also holds Jan 1, which `keep_daily`'s places left keep as the oldest copy.)
        let listing = Listing {
            copies: vec![
                copy("b", "www", "20240101060000", 1, true),
                copy("a", "www", "20240109120000", 1, true),
                copy("b", "www", "20240109120000", 1, true),
                copy("a", "www", "20240109060000", 1, true),
                copy("a", "www", "20240108060000", 1, true),
            ],
            ..Listing::default()
        };
        let mut daily = column("b", 0, 0);
        daily.retention.calendar.daily = 7;
        let cov = Coverage::new(&listing, vec![column("a", 0, 0), daily], now());
        let cells: Vec<(String, Cell)> = cov
            .rows
            .iter()
            .map(|r| (r.stamp.to_string(), r.cells[1]))
            .filter(|(stamp, _)| stamp != "20240101060000")
            .collect();
        assert_eq!(
            cells,
            [
                (
                    "20240109120000".to_string(),
                    Cell::Present {
                        size: 1,
                        has_sidecar: true
                    }
                ),
                ("20240109060000".to_string(), Cell::Expired),
                ("20240108060000".to_string(), Cell::Missing),
            ]
        );
    }

    #[test]
    fn gaps_that_retention_explains_are_expired_not_missing() {
        // `b` keeps 1 good copy and `c` 2 days: the run 8 days old is gone from both by design.
        let listing = Listing {
            copies: vec![
                copy("a", "www", "20240109000000", 1, true),
                copy("b", "www", "20240109000000", 1, true),
                copy("c", "www", "20240109000000", 1, true),
                copy("a", "www", "20240102000000", 1, true),
            ],
            ..Listing::default()
        };
        let cols = vec![column("a", 0, 0), column("b", 1, 0), column("c", 0, 2)];
        let cov = Coverage::new(&listing, cols, now());
        assert_eq!(cov.rows[1].cells[1..], [Cell::Expired, Cell::Expired]);
        assert_eq!(cov.gaps().count(), 0);
        // A newer copy without its sidecar does not count towards `retention_copies`.
        let listing = Listing {
            copies: vec![
                copy("a", "www", "20240109000000", 1, true),
                copy("b", "www", "20240109000000", 1, false),
                copy("a", "www", "20240102000000", 1, true),
            ],
            ..Listing::default()
        };
        let cov = Coverage::new(&listing, vec![column("a", 0, 0), column("b", 1, 0)], now());
        assert_eq!(cov.rows[1].cells[1], Cell::Missing);
    }

    #[test]
    fn an_unlisted_destination_is_unknown_not_missing() {
        let listing = Listing {
            copies: vec![copy("a", "www", "20240102000000", 1, true)],
            unlisted: vec!["b".into()],
            ..Listing::default()
        };
        let cov = Coverage::new(&listing, vec![column("a", 0, 0), column("b", 0, 0)], now());
        assert!(cov.columns[1].unlisted);
        assert_eq!(cov.rows[0].cells[1], Cell::Unknown);
        assert_eq!(cov.gaps().count(), 0);
    }
}
