//! Retention: which stored copies of a source to delete at a destination, and deleting them.
//!
//! The original's rules, per destination and source id, applied to the timestamped copies
//! (`{id}/{YYYYmmddHHMMSS}/`): `retention_copies: N` removes all but the newest N,
//! `retention_days: D` removes copies whose age in whole days is greater than D, and a copy
//! goes when either rule says so (0 or absent disables a rule). custos adds two guarantees the
//! original lacks: retention never runs for a destination whose upload failed in this run (the
//! runner does not call it), and the newest *good* copy (committed, with its sha256 sidecar)
//! is never removed, whatever the rules say. Copies without a sidecar (a run killed before its
//! commit finished) do not count towards N, so they cannot push a good copy out.
//!
//! Copies are ranked by the instant their stamp names ([`RunStamp::instant`]), never by clock
//! luck: the copy written in this run is never removed by this run's retention, whatever
//! other stamps say (`retention_copies: N` keeps it plus the N-1 newest other good copies),
//! so neither copies dated in the future nor the DST fall-back hour can make a run delete
//! its own fresh copy. Copies dated in the future are left alone (their age is unknown) and
//! reported, so the operator can look at them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use chrono::{Local, TimeZone};

use crate::destination::{Destination, DestinationError, ObjectInfo};
use crate::engine::calendar::{self, Candidate, Rule};
use crate::job::RetentionPolicy;
use crate::naming::{self, RunStamp};

/// One stored copy of a source at a destination: every object of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// The run's timestamp folder (`YYYYmmddHHMMSS`), as named.
    pub timestamp: String,
    /// When the run happened (from the name).
    pub time: SystemTime,
    /// Committed with a checksum sidecar: restorable and verifiable.
    pub good: bool,
    /// Every object of this copy (payloads and sidecars), full names.
    pub objects: Vec<String>,
}

/// Decides which copies to delete; returns their indices into `copies` (any order in,
/// ascending indices out). `current` is the timestamp of the copy this run wrote: never
/// deleted, and one of the N copies kept. Pure: the caller lists and deletes.
pub fn plan(
    policy: &RetentionPolicy,
    copies: &[StoredCopy],
    now: SystemTime,
    current: Option<&str>,
) -> Vec<usize> {
    decide(policy, copies, now, current, &Local)
        .iter()
        .enumerate()
        .filter(|(_, v)| v.delete)
        .map(|(i, _)| i)
        .collect()
}

/// What retention says of one copy: delete it, or the rules that keep it (empty when no
/// rule is set: nothing is deleted then).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub delete: bool,
    pub kept_by: Vec<Rule>,
}

/// [`plan`] with the reasons (for `backup prune --dry-run`), local time being `tz`'s.
///
/// The original's rules alone delete what either of them says (as in the original). With
/// calendar keys too, a copy stays when the original's rules or a calendar rule keep it (a
/// union: adding `keep_monthly` never removes more than before). Whatever the rules say,
/// this run's copy, copies dated in the future and (without a current copy) the newest good
/// copy stay.
pub fn decide<Tz: TimeZone>(
    policy: &RetentionPolicy,
    copies: &[StoredCopy],
    now: SystemTime,
    current: Option<&str>,
    tz: &Tz,
) -> Vec<Verdict> {
    let mut verdicts = vec![Verdict::default(); copies.len()];
    if !policy.is_active() || copies.is_empty() {
        return verdicts;
    }
    let is_current = |i: usize| current == Some(copies[i].timestamp.as_str());
    // Newest first; ties broken by name so the outcome does not depend on listing order.
    // Copies dated in the future and this run's copy are not ranked: they stay.
    let mut order: Vec<usize> = (0..copies.len())
        .filter(|&i| copies[i].time <= now && !is_current(i))
        .collect();
    order.sort_by(|&a, &b| {
        copies[b]
            .time
            .cmp(&copies[a].time)
            .then_with(|| copies[b].timestamp.cmp(&copies[a].timestamp))
    });
    let current_index = (0..copies.len()).find(|&i| is_current(i));
    let newest_good = order.iter().copied().find(|&i| copies[i].good);

    let mut delete = vec![false; copies.len()];
    if policy.original_active() {
        original(
            policy,
            copies,
            &order,
            current_index.is_some(),
            now,
            &mut delete,
        );
        let rule = if policy.copies > 0 {
            Rule::Copies
        } else {
            Rule::Days
        };
        for &i in &order {
            if !delete[i] {
                verdicts[i].kept_by.push(rule);
            }
        }
    } else {
        // Only calendar rules: what they do not keep goes.
        for &i in &order {
            delete[i] = true;
        }
    }
    if policy.calendar.is_active() {
        // This run's copy is the newest: it takes its place in every bucket.
        let candidates: Vec<Candidate> = current_index
            .into_iter()
            .chain(order.iter().copied())
            .map(|i| Candidate {
                index: i,
                time: copies[i].time,
                good: copies[i].good || Some(i) == current_index,
            })
            .collect();
        for (i, rules) in calendar::keep(&policy.calendar, &candidates, tz) {
            delete[i] = false;
            verdicts[i].kept_by.extend(rules);
        }
    }
    for (i, copy) in copies.iter().enumerate() {
        if copy.time > now {
            verdicts[i].kept_by.insert(0, Rule::Future);
        }
    }
    if let Some(i) = current_index {
        verdicts[i].kept_by.insert(0, Rule::ThisRun);
    }
    // Without this run's copy (retention run on its own), the newest good one stays.
    if let (None, Some(i)) = (current_index, newest_good) {
        if delete[i] {
            delete[i] = false;
            verdicts[i].kept_by.push(Rule::NewestGood);
        }
    }
    for &i in &order {
        verdicts[i].delete = delete[i];
        if delete[i] {
            verdicts[i].kept_by.clear();
        }
    }
    verdicts
}

/// The original's two rules: `retention_copies: N` removes all but the newest N good copies
/// (this run's copy takes one place), `retention_days: D` removes copies older than D whole
/// days; either one removes.
fn original(
    policy: &RetentionPolicy,
    copies: &[StoredCopy],
    order: &[usize],
    has_current: bool,
    now: SystemTime,
    delete: &mut [bool],
) {
    if policy.copies > 0 {
        let keep = policy.copies as usize - usize::from(has_current);
        // Good copies strictly newer than the one being looked at.
        let mut good_newer = 0usize;
        for &i in order {
            if good_newer >= keep {
                delete[i] = true;
            }
            if copies[i].good {
                good_newer += 1;
            }
        }
    }
    if policy.days > 0 {
        let limit = u64::from(policy.days);
        for &i in order {
            let age_days = now
                .duration_since(copies[i].time)
                .unwrap_or(Duration::ZERO)
                .as_secs()
                / 86_400;
            if age_days > limit {
                delete[i] = true;
            }
        }
    }
}

/// Indices of the copies dated after `now`.
pub fn future(copies: &[StoredCopy], now: SystemTime) -> Vec<usize> {
    (0..copies.len())
        .filter(|&i| copies[i].time > now)
        .collect()
}

/// Groups a listing of `{source_id}/` into copies, one per timestamp. Only names that parse
/// as this source's objects or their sidecars ([`naming::parse_stored`]) belong to a copy:
/// anything else (a foreign file in a copy's folder, a name with `..` or `//`) is never
/// deleted and is returned apart. A copy is good when an object has its sidecar beside it.
pub fn copies(source_id: &str, listing: &[ObjectInfo]) -> (Vec<StoredCopy>, Vec<String>) {
    let mut by_stamp: BTreeMap<RunStamp, Vec<&str>> = BTreeMap::new();
    let mut foreign = Vec::new();
    for o in listing {
        match naming::parse_stored(&o.name) {
            Some((n, _)) if n.source_id == source_id => {
                let names = by_stamp.entry(n.stamp).or_default();
                // A store that normalizes keys can list one name twice.
                if !names.contains(&o.name.as_str()) {
                    names.push(&o.name);
                }
            }
            _ => foreign.push(o.name.clone()),
        }
    }
    let copies = by_stamp
        .into_iter()
        .map(|(stamp, names)| {
            let good = names.iter().any(|n| {
                !naming::is_sidecar(n) && names.contains(&naming::sidecar_name(n).as_str())
            });
            let mut objects: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            // Sidecars first: a copy half deleted never looks good.
            objects.sort_by_key(|n| (!naming::is_sidecar(n), n.clone()));
            StoredCopy {
                timestamp: stamp.to_string(),
                time: stamp.instant(),
                good,
                objects,
            }
        })
        .collect();
    (copies, foreign)
}

/// Longest list of foreign names quoted in the warning.
const FOREIGN_QUOTED: usize = 5;

/// What retention did at one destination for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Timestamps of the copies removed.
    pub removed: Vec<String>,
    /// Good copies left.
    pub retained_good: usize,
    /// Timestamps of copies dated in the future (left alone; worth a warning).
    pub future: Vec<String>,
}

/// Lists `{source_id}/` at `destination`, decides with [`plan`] and deletes the chosen copies
/// (every object of each); `current` is this run's timestamp, whose copy stays. Also reports
/// copies dated in the future, with or without a policy. Call it only after this run's
/// upload there succeeded.
pub fn apply(
    destination: &dyn Destination,
    source_id: &str,
    policy: &RetentionPolicy,
    now: SystemTime,
    current: Option<&str>,
) -> Result<Applied, DestinationError> {
    let all = list_copies(destination, source_id)?;
    let doomed = plan(policy, &all, now, current);
    let mut applied = Applied {
        removed: Vec::new(),
        retained_good: all
            .iter()
            .enumerate()
            .filter(|(i, c)| c.good && !doomed.contains(i))
            .count(),
        future: future(&all, now)
            .into_iter()
            .map(|i| all[i].timestamp.clone())
            .collect(),
    };
    for i in doomed {
        remove(destination, source_id, &all[i])?;
        applied.removed.push(all[i].timestamp.clone());
    }
    Ok(applied)
}

/// Lists `{source_id}/` at `destination` as copies; names that are not this source's copies
/// are left out (and warned about: they are never deleted).
pub fn list_copies(
    destination: &dyn Destination,
    source_id: &str,
) -> Result<Vec<StoredCopy>, DestinationError> {
    let listing = destination.list(&format!("{source_id}/"))?;
    let (all, foreign) = copies(source_id, &listing);
    if !foreign.is_empty() {
        let quoted: Vec<String> = foreign
            .iter()
            .take(FOREIGN_QUOTED)
            .map(|n| format!("{n:?}"))
            .collect();
        let more = foreign.len().saturating_sub(FOREIGN_QUOTED);
        tracing::warn!(
            destination = destination.id(),
            source = source_id,
            count = foreign.len(),
            "retention: left alone {} object(s) under {source_id}/ that are not copies of this \
             source: {}{}",
            foreign.len(),
            quoted.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    Ok(all)
}

/// Deletes every object of `copy` (sidecars first: a copy half deleted never looks good).
pub fn remove(
    destination: &dyn Destination,
    source_id: &str,
    copy: &StoredCopy,
) -> Result<(), DestinationError> {
    tracing::info!(
        destination = destination.id(),
        source = source_id,
        copy = %copy.timestamp,
        good = copy.good,
        "retention: removing copy"
    );
    for object in &copy.objects {
        destination.delete(object)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Local, TimeDelta};

    const DAY: u64 = 86_400;

    /// The original's two keys.
    fn policy(copies: u32, days: u32) -> RetentionPolicy {
        RetentionPolicy {
            copies,
            days,
            ..Default::default()
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
    }

    /// A copy `days_ago` days and one minute before now.
    fn copy(days_ago: u64, good: bool) -> StoredCopy {
        let time = now() - Duration::from_secs(days_ago * DAY + 60);
        StoredCopy {
            timestamp: format!("ts-{days_ago:03}"),
            time,
            good,
            objects: vec![format!("src/ts-{days_ago:03}/src.tar.zst.gpg")],
        }
    }

    fn names(copies: &[StoredCopy], idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| copies[i].timestamp.clone()).collect()
    }

    /// Good copies at local (UTC) times, named by their stamp.
    fn at(stamps: &[&str]) -> Vec<StoredCopy> {
        stamps
            .iter()
            .map(|s| {
                let t = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").unwrap();
                StoredCopy {
                    timestamp: s.to_string(),
                    time: t.and_utc().into(),
                    good: true,
                    objects: vec![format!("src/{s}/src.tar.zst.gpg")],
                }
            })
            .collect()
    }

    fn verdicts(
        policy: &RetentionPolicy,
        copies: &[StoredCopy],
        now: &str,
        current: Option<&str>,
    ) -> Vec<(String, String)> {
        let now = chrono::NaiveDateTime::parse_from_str(now, "%Y%m%d%H%M%S")
            .unwrap()
            .and_utc()
            .into();
        decide(policy, copies, now, current, &chrono::Utc)
            .iter()
            .zip(copies)
            .map(|(v, c)| {
                let what = if v.delete {
                    "delete".to_string()
                } else {
                    v.kept_by
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                (c.timestamp.clone(), what)
            })
            .collect()
    }

    #[test]
    fn calendar_and_original_rules_keep_the_union_and_say_why() {
        let copies = at(&[
            "20240331230000",
            "20240331100000",
            "20240315100000",
            "20240229100000",
            "20240131100000",
            "20231231100000",
        ]);
        let mut p = policy(2, 0);
        p.calendar.monthly = 3;
        let v = verdicts(&p, &copies, "20240401000000", Some("20240331230000"));
        assert_eq!(
            v,
            [
                (
                    "20240331230000".into(),
                    "this run's copy, keep_monthly".into()
                ),
                ("20240331100000".into(), "retention_copies".into()),
                ("20240315100000".into(), "delete".into()),
                ("20240229100000".into(), "keep_monthly".into()),
                ("20240131100000".into(), "keep_monthly".into()),
                ("20231231100000".into(), "delete".into()),
            ]
        );
        // Calendar keys alone: what they do not keep goes, but never this run's copy nor a
        // copy dated in the future.
        let mut p = RetentionPolicy::default();
        p.calendar.last = 1;
        let mut copies = at(&["20240402000000", "20240331230000", "20240331100000"]);
        copies[0].good = false;
        let v = verdicts(&p, &copies, "20240401000000", None);
        assert_eq!(
            v,
            [
                ("20240402000000".into(), "dated in the future".into()),
                ("20240331230000".into(), "keep_last".into()),
                ("20240331100000".into(), "delete".into()),
            ]
        );
    }

    #[test]
    fn calendar_only_keeps_the_newest_good_copy_without_a_run() {
        let mut p = RetentionPolicy::default();
        p.calendar.within = Some("1d".parse().unwrap());
        let mut copies = at(&["20240331100000", "20240301100000"]);
        // The newest has no sidecar: within counts from the newest good copy (March 1), so
        // the broken copy is also within; the good one stays as the newest good copy would.
        copies[0].good = false;
        let v = verdicts(&p, &copies, "20240401000000", None);
        assert_eq!(
            v,
            [
                ("20240331100000".into(), "keep_within 1d".into()),
                ("20240301100000".into(), "keep_within 1d".into()),
            ]
        );
    }

    #[test]
    fn no_policy_deletes_nothing() {
        let c = vec![copy(1, true), copy(100, true)];
        assert!(plan(&RetentionPolicy::default(), &c, now(), None).is_empty());
    }

    #[test]
    fn copies_keeps_the_newest_n() {
        let c = vec![copy(3, true), copy(0, true), copy(2, true), copy(1, true)];
        let p = policy(2, 0);
        assert_eq!(names(&c, &plan(&p, &c, now(), None)), ["ts-003", "ts-002"]);
    }

    #[test]
    fn days_removes_only_copies_older_than_d_whole_days() {
        // Ages: 6 days + 60 s (6 whole days), 7 days + 60 s (7), 8 days + 60 s (8).
        let c = vec![copy(6, true), copy(7, true), copy(8, true)];
        let p = policy(0, 7);
        assert_eq!(names(&c, &plan(&p, &c, now(), None)), ["ts-008"]);
    }

    #[test]
    fn both_rules_remove_the_union() {
        let c = vec![copy(0, true), copy(1, true), copy(2, true), copy(40, true)];
        // copies=3 removes ts-040; days=1 removes ts-002 and ts-040.
        let p = policy(3, 1);
        assert_eq!(names(&c, &plan(&p, &c, now(), None)), ["ts-002", "ts-040"]);
    }

    #[test]
    fn the_newest_good_copy_survives_every_rule() {
        // Only old copies, the newest of them good: days=7 would remove everything.
        let c = vec![copy(30, true), copy(31, true), copy(20, false)];
        let p = policy(0, 7);
        assert_eq!(names(&c, &plan(&p, &c, now(), None)), ["ts-031", "ts-020"]);
    }

    #[test]
    fn incomplete_copies_do_not_count_towards_n() {
        // Newest two are incomplete (killed runs): the two newest good ones stay.
        let c = vec![
            copy(0, false),
            copy(1, false),
            copy(2, true),
            copy(3, true),
            copy(4, true),
        ];
        let p = policy(2, 0);
        assert_eq!(names(&c, &plan(&p, &c, now(), None)), ["ts-004"]);
    }

    #[test]
    fn incomplete_copies_beyond_the_window_go() {
        let c = vec![copy(0, true), copy(1, false), copy(2, true), copy(3, false)];
        let p = policy(1, 0);
        assert_eq!(
            names(&c, &plan(&p, &c, now(), None)),
            ["ts-001", "ts-002", "ts-003"]
        );
    }

    #[test]
    fn without_any_good_copy_the_copies_rule_removes_nothing() {
        // No good copy at all: copies=1 counts none, so nothing is beyond the window.
        let c = vec![copy(0, false), copy(1, false)];
        let p = policy(1, 0);
        assert!(plan(&p, &c, now(), None).is_empty());
    }

    #[test]
    fn future_timestamps_are_not_old() {
        let mut c = vec![copy(0, true)];
        c[0].time = now() + Duration::from_secs(3 * DAY);
        let p = policy(0, 1);
        assert!(plan(&p, &c, now(), None).is_empty());
    }

    #[test]
    fn listing_order_does_not_matter() {
        let a = vec![copy(0, true), copy(1, true), copy(2, true)];
        let mut b = a.clone();
        b.reverse();
        let p = policy(1, 0);
        let mut na = names(&a, &plan(&p, &a, now(), None));
        let mut nb = names(&b, &plan(&p, &b, now(), None));
        na.sort();
        nb.sort();
        assert_eq!(na, nb);
    }

    fn info(name: &str) -> ObjectInfo {
        ObjectInfo {
            name: name.to_owned(),
            size: 1,
            modified: None,
        }
    }

    #[test]
    fn copies_groups_by_stamp_and_needs_a_sidecar_to_be_good() {
        let listing = [
            info("www/20240101020000/www.tar.zst.gpg"),
            info("www/20240101020000/www.tar.zst.gpg.sha256"),
            info("www/20240102020000/www.tar.zst.gpg"),
            info("www/20240103020000/www.tar.gpg"),
            info("www/20240103020000/www.tar.gpg.sha256"),
            info("www/20240103020000/notes.txt"),
            info("www/not-a-stamp/www.tar.gpg"),
            info("www-old/20240101020000/www-old.tar.gpg"),
            info("www/20240103020000/www.tar.gpg/../../../etc/x"),
            info("www//20240103020000/www.tar.gpg"),
            info("www/20190101000000/KEEPME-foreign.txt"),
        ];
        let (c, foreign) = copies("www", &listing);
        // Only the source's objects and sidecars belong to copies; the rest is left alone.
        assert_eq!(
            foreign,
            [
                "www/20240103020000/notes.txt",
                "www/not-a-stamp/www.tar.gpg",
                "www-old/20240101020000/www-old.tar.gpg",
                "www/20240103020000/www.tar.gpg/../../../etc/x",
                "www//20240103020000/www.tar.gpg",
                "www/20190101000000/KEEPME-foreign.txt",
            ]
        );
        let summary: Vec<(&str, bool, usize)> = c
            .iter()
            .map(|c| (c.timestamp.as_str(), c.good, c.objects.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("20240101020000", true, 2),
                ("20240102020000", false, 1),
                ("20240103020000", true, 2)
            ]
        );
        // Sidecars are deleted first.
        assert!(naming::is_sidecar(&c[0].objects[0]));
        assert!(c[0].time < c[1].time && c[1].time < c[2].time);
    }

    fn put(root: &std::path::Path, name: &str) {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    fn stamp_days_ago(days: i64) -> String {
        RunStamp::from_datetime(Local::now().naive_local() - TimeDelta::days(days)).to_string()
    }

    #[test]
    fn apply_deletes_whole_copies_at_a_local_destination() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let stamps: Vec<String> = (0..4).map(|d| stamp_days_ago(d * 10)).collect();
        // Newest copy (stamps[0]) is incomplete: a run killed before its sidecar.
        put(root, &format!("db/{}/db.sql.zst.gpg", stamps[0]));
        for s in &stamps[1..] {
            put(root, &format!("db/{s}/db.sql.zst.gpg"));
            put(root, &format!("db/{s}/db.sql.zst.gpg.sha256"));
        }
        let dest = crate::destination::local::LocalDestination::new("local", root);
        let one = policy(1, 0);
        let applied = apply(&dest, "db", &one, SystemTime::now(), None).unwrap();
        let mut removed = applied.removed.clone();
        removed.sort();
        let mut expected = vec![stamps[2].clone(), stamps[3].clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(applied.retained_good, 1);
        assert!(root
            .join(format!("db/{}/db.sql.zst.gpg.sha256", stamps[1]))
            .exists());
        assert!(root
            .join(format!("db/{}/db.sql.zst.gpg", stamps[0]))
            .exists());
        assert!(
            !root.join(format!("db/{}", stamps[3])).exists(),
            "folder left behind"
        );

        // days=5 would remove the only good copy left (10 days old): it stays.
        let days_only = policy(0, 5);
        let applied = apply(&dest, "db", &days_only, SystemTime::now(), None).unwrap();
        assert!(applied.removed.is_empty(), "{applied:?}");
        assert!(root
            .join(format!("db/{}/db.sql.zst.gpg", stamps[1]))
            .exists());
    }

    #[test]
    fn inactive_policy_deletes_nothing_but_reports_future_copies() {
        let dir = tempfile::tempdir().unwrap();
        let future = RunStamp::from_datetime(Local::now().naive_local() + TimeDelta::days(3));
        put(dir.path(), &format!("db/{future}/db.sql.zst.gpg"));
        put(
            dir.path(),
            &format!("db/{}/db.sql.zst.gpg", stamp_days_ago(400)),
        );
        let dest = crate::destination::local::LocalDestination::new("l", dir.path());
        let applied = apply(
            &dest,
            "db",
            &RetentionPolicy::default(),
            SystemTime::now(),
            None,
        )
        .unwrap();
        assert!(applied.removed.is_empty());
        assert_eq!(applied.future, [future.to_string()]);
    }

    /// A copy `secs` seconds after now (in the future).
    fn ahead(secs: u64, name: &str) -> StoredCopy {
        StoredCopy {
            timestamp: name.to_owned(),
            time: now() + Duration::from_secs(secs),
            good: true,
            objects: vec![format!("src/{name}/src.tar.zst.gpg")],
        }
    }

    #[test]
    fn this_runs_copy_survives_future_dated_copies() {
        // The case: two copies dated in the future, retention_copies: 2. This run's
        // copy (ts-000) stays, plus the newest other good copy that is not in the future;
        // the future ones are left alone and reported.
        let c = vec![
            ahead(DAY, "f1"),
            ahead(2 * DAY, "f2"),
            copy(0, true),
            copy(1, true),
            copy(2, true),
        ];
        let p = policy(2, 0);
        assert_eq!(names(&c, &plan(&p, &c, now(), Some("ts-000"))), ["ts-002"]);
        assert_eq!(names(&c, &future(&c, now())), ["f1", "f2"]);
        // copies: 1 keeps only this run's copy.
        let p = policy(1, 0);
        assert_eq!(
            names(&c, &plan(&p, &c, now(), Some("ts-000"))),
            ["ts-001", "ts-002"]
        );
    }

    #[test]
    fn this_runs_copy_survives_when_it_ranks_older_than_others() {
        // DST fall-back: this run's stamp (second 02:10) reads as the first 02:10, older than
        // a copy stamped 02:45 an hour of wall time earlier. It is this run's: it stays.
        let mut c = vec![copy(0, true), copy(0, true)];
        c[0].timestamp = "20261025021000".into();
        c[0].time = now() - Duration::from_secs(3600);
        c[1].timestamp = "20261025024500".into();
        c[1].time = now() - Duration::from_secs(1500);
        let p = policy(1, 0);
        assert_eq!(
            names(&c, &plan(&p, &c, now(), Some("20261025021000"))),
            ["20261025024500"]
        );
        // days: 0-day-old copies are never older than D; this run's copy is never removed.
        let p = policy(0, 1);
        let later = now() + Duration::from_secs(30 * DAY);
        assert_eq!(plan(&p, &c, later, Some("20261025021000")), [1]);
    }
}
