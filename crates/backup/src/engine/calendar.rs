//! Calendar retention: restic's `forget` rules (documented in restic's "Removing backup
//! snapshots"), applied to one destination's copies of one source.
//!
//! Walking the copies newest first, `keep_hourly: N` keeps a copy when its hour differs from
//! the hour of the last copy that rule kept, until it kept N; so it keeps the newest copy of
//! each of the last N hours that have one. Daily, weekly (ISO weeks), monthly and yearly do
//! the same with their buckets, in local time (a copy's name is its local time, so the
//! DST fall-back hour's two copies share one hour, as in restic). `keep_last: N` keeps the
//! newest N. When a bucket rule has places left after the walk, the oldest copy is kept by
//! it too (restic 0.14+), so a young repository never loses its first copy. `keep_within:
//! SPAN` keeps every copy newer than SPAN before the newest copy (not before now: a job
//! that stopped running keeps its last copies).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike, Utc};

use crate::job::{Calendar, Span};

/// Why a copy stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rule {
    /// This run wrote it.
    ThisRun,
    /// Dated after now: its age is unknown, so it is left alone.
    Future,
    /// The newest good copy is never removed.
    NewestGood,
    /// `retention_copies` (with `retention_days`, when both are set).
    Copies,
    /// `retention_days` alone.
    Days,
    Last,
    /// `keep_hourly` ... `keep_yearly`.
    Bucket(Bucket),
    /// A bucket rule with places left keeps the oldest copy.
    Oldest(Bucket),
    Within(Span),
}

/// The calendar buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Bucket {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Bucket {
    const ALL: [Bucket; 5] = [
        Bucket::Hourly,
        Bucket::Daily,
        Bucket::Weekly,
        Bucket::Monthly,
        Bucket::Yearly,
    ];

    fn key(self) -> &'static str {
        match self {
            Bucket::Hourly => "keep_hourly",
            Bucket::Daily => "keep_daily",
            Bucket::Weekly => "keep_weekly",
            Bucket::Monthly => "keep_monthly",
            Bucket::Yearly => "keep_yearly",
        }
    }

    fn count(self, c: &Calendar) -> u32 {
        match self {
            Bucket::Hourly => c.hourly,
            Bucket::Daily => c.daily,
            Bucket::Weekly => c.weekly,
            Bucket::Monthly => c.monthly,
            Bucket::Yearly => c.yearly,
        }
    }

    /// The bucket a local time falls in (year first, so buckets of different years differ).
    fn of(self, t: NaiveDateTime) -> (i32, u32, u32) {
        match self {
            Bucket::Hourly => (t.year(), t.ordinal(), t.hour()),
            Bucket::Daily => (t.year(), t.ordinal(), 0),
            Bucket::Weekly => {
                let w = t.iso_week();
                (w.year(), w.week(), 0)
            }
            Bucket::Monthly => (t.year(), t.month(), 0),
            Bucket::Yearly => (t.year(), 0, 0),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::ThisRun => f.write_str("this run's copy"),
            Rule::Future => f.write_str("dated in the future"),
            Rule::NewestGood => f.write_str("newest good copy"),
            Rule::Copies => f.write_str("retention_copies"),
            Rule::Days => f.write_str("retention_days"),
            Rule::Last => f.write_str("keep_last"),
            Rule::Bucket(b) => f.write_str(b.key()),
            Rule::Oldest(b) => write!(f, "{} (oldest copy)", b.key()),
            Rule::Within(s) => write!(f, "keep_within {s}"),
        }
    }
}

/// A copy as the calendar rules see it.
pub(crate) struct Candidate {
    /// Index into the caller's list.
    pub index: usize,
    pub time: SystemTime,
    /// Committed with its sidecar: only those fill buckets (a broken copy must not take
    /// the place of a restorable one).
    pub good: bool,
}

/// Which candidates (newest first) the calendar keeps, and by which rules; local time is
/// `tz`'s (the engine passes `chrono::Local`).
pub(crate) fn keep<Tz: TimeZone>(
    calendar: &Calendar,
    newest_first: &[Candidate],
    tz: &Tz,
) -> BTreeMap<usize, Vec<Rule>> {
    let local = |t: SystemTime| {
        tz.from_utc_datetime(&DateTime::<Utc>::from(t).naive_utc())
            .naive_local()
    };
    let mut kept: BTreeMap<usize, Vec<Rule>> = BTreeMap::new();
    let good: Vec<&Candidate> = newest_first.iter().filter(|c| c.good).collect();
    for c in good.iter().take(calendar.last as usize) {
        kept.entry(c.index).or_default().push(Rule::Last);
    }
    for bucket in Bucket::ALL {
        let mut left = bucket.count(calendar);
        if left == 0 {
            continue;
        }
        let mut last = None;
        for c in &good {
            if left == 0 {
                break;
            }
            let key = bucket.of(local(c.time));
            if last != Some(key) {
                kept.entry(c.index).or_default().push(Rule::Bucket(bucket));
                last = Some(key);
                left -= 1;
            }
        }
        if left > 0 {
            if let Some(oldest) = good.last() {
                let rules = kept.entry(oldest.index).or_default();
                if !rules.contains(&Rule::Bucket(bucket)) {
                    rules.push(Rule::Oldest(bucket));
                }
            }
        }
    }
    if let (Some(span), Some(newest)) = (calendar.within, good.first()) {
        let limit = span.before(local(newest.time));
        for c in newest_first {
            if limit.is_none_or(|limit| local(c.time) > limit) {
                kept.entry(c.index).or_default().push(Rule::Within(span));
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    /// Candidates from local times (UTC+1, a fixed offset), newest first, all good.
    fn candidates(stamps: &[&str]) -> Vec<Candidate> {
        let tz = FixedOffset::east_opt(3600).expect("offset");
        let mut v: Vec<Candidate> = stamps
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test stamp");
                let time = tz
                    .from_local_datetime(&naive)
                    .single()
                    .expect("local")
                    .into();
                Candidate {
                    index,
                    time,
                    good: true,
                }
            })
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.time));
        v
    }

    fn kept_stamps(cal: Calendar, stamps: &[&str]) -> Vec<(String, Vec<String>)> {
        let tz = FixedOffset::east_opt(3600).expect("offset");
        keep(&cal, &candidates(stamps), &tz)
            .into_iter()
            .map(|(i, rules)| {
                (
                    stamps[i].to_string(),
                    rules.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    fn only(cal: Calendar, stamps: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = kept_stamps(cal, stamps)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn daily_keeps_the_newest_copy_of_each_of_the_last_n_days_with_one() {
        let cal = Calendar {
            daily: 3,
            ..Default::default()
        };
        let stamps = [
            "2024-03-01 01:00",
            "2024-03-01 23:00",
            "2024-03-03 05:00",
            "2024-03-03 04:00",
            "2024-03-04 00:30",
            "2024-02-29 12:00",
        ];
        // Days with a copy: 03-04, 03-03, 03-01 (03-02 has none, so it takes no place).
        assert_eq!(
            only(cal, &stamps),
            ["2024-03-01 23:00", "2024-03-03 05:00", "2024-03-04 00:30"]
        );
    }

    #[test]
    fn month_ends_and_the_leap_day_fall_in_their_own_months() {
        let cal = Calendar {
            monthly: 3,
            ..Default::default()
        };
        let stamps = [
            "2024-01-31 23:59",
            "2024-02-01 00:00",
            "2024-02-29 23:00",
            "2024-03-01 00:10",
            "2024-03-31 23:59",
        ];
        assert_eq!(
            only(cal, &stamps),
            ["2024-01-31 23:59", "2024-02-29 23:00", "2024-03-31 23:59"]
        );
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_end() {
        let cal = Calendar {
            weekly: 2,
            ..Default::default()
        };
        // 2024-12-30 (Monday) to 2025-01-05 (Sunday) is ISO week 2025-W01.
        let stamps = ["2024-12-29 10:00", "2024-12-30 10:00", "2025-01-05 10:00"];
        assert_eq!(only(cal, &stamps), ["2024-12-29 10:00", "2025-01-05 10:00"]);
    }

    #[test]
    fn a_bucket_rule_with_places_left_keeps_the_oldest_copy() {
        let cal = Calendar {
            yearly: 5,
            ..Default::default()
        };
        let stamps = ["2024-06-01 00:00", "2024-01-01 00:00", "2023-05-01 00:00"];
        let kept = kept_stamps(cal, &stamps);
        assert_eq!(
            kept,
            [
                (
                    "2024-06-01 00:00".to_string(),
                    vec!["keep_yearly".to_string()]
                ),
                (
                    "2023-05-01 00:00".to_string(),
                    vec!["keep_yearly".to_string()]
                ),
            ],
            "the oldest is already kept by the rule: not twice"
        );
        let cal = Calendar {
            daily: 5,
            ..Default::default()
        };
        let stamps = ["2024-06-01 10:00", "2024-06-01 09:00"];
        assert_eq!(
            kept_stamps(cal, &stamps),
            [
                (
                    "2024-06-01 10:00".to_string(),
                    vec!["keep_daily".to_string()]
                ),
                (
                    "2024-06-01 09:00".to_string(),
                    vec!["keep_daily (oldest copy)".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn within_counts_back_from_the_newest_copy_in_calendar_months() {
        let cal = Calendar {
            within: Some("1m".parse().expect("span")),
            ..Default::default()
        };
        // A month before March 31 is February 29 (clamped): copies after it stay.
        let stamps = ["2024-03-31 12:00", "2024-02-29 12:00", "2024-02-29 12:01"];
        assert_eq!(only(cal, &stamps), ["2024-02-29 12:01", "2024-03-31 12:00"]);
        let huge = Calendar {
            within: Some("100000000y".parse().expect("span")),
            ..Default::default()
        };
        assert_eq!(
            only(huge, &stamps).len(),
            3,
            "a span before year 1 keeps all"
        );
    }

    #[test]
    fn broken_copies_take_no_place_in_a_bucket() {
        let cal = Calendar {
            last: 1,
            daily: 1,
            ..Default::default()
        };
        let mut c = candidates(&["2024-03-02 10:00", "2024-03-01 10:00"]);
        // The newest has no sidecar.
        c[0].good = false;
        let kept = keep(&cal, &c, &FixedOffset::east_opt(3600).expect("offset"));
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [1]);
    }
}
