//! A destination's retention keys: the original's `retention_copies` / `retention_days` and
//! custos' calendar keys (`keep_last`, `keep_hourly`, ..., `keep_within`, restic's rules).
//! This holds what the user wrote; `engine::retention` decides with it.

use std::fmt;

use chrono::{Days, Months, NaiveDateTime, TimeDelta};
use serde::{de, Deserialize, Deserializer};

/// The retention rules of one destination; 0 (or absent) disables a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// `retention_copies`: keep the newest N good copies.
    pub copies: u32,
    /// `retention_days`: remove copies older than D whole days.
    pub days: u32,
    /// The calendar keys; kept copies are the union of what these and the original's keep.
    pub calendar: Calendar,
}

impl RetentionPolicy {
    /// Whether any rule is set.
    pub fn is_active(&self) -> bool {
        self.original_active() || self.calendar.is_active()
    }

    /// Whether one of the original's two keys is set.
    pub fn original_active(&self) -> bool {
        self.copies > 0 || self.days > 0
    }
}

/// restic's `forget` rules, as custos keys: the newest copy in each of the last N hours,
/// days, ISO weeks, months and years that have a copy (local time), the newest N copies,
/// and every copy within a span before the newest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calendar {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Span>,
}

impl Calendar {
    /// Whether any calendar key is set.
    pub fn is_active(&self) -> bool {
        self.last > 0
            || self.hourly > 0
            || self.daily > 0
            || self.weekly > 0
            || self.monthly > 0
            || self.yearly > 0
            || self.within.is_some()
    }
}

/// `keep_within`: restic's duration, `2y5m7d3h` (years, months, days, hours; each part
/// optional, in this order). Months and years are calendar months and years, as in restic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

/// The most of any one unit: far beyond any retention anyone means (10,000 years in hours
/// is 87,600,000), small enough that date arithmetic cannot overflow.
const SPAN_PART_MAX: u32 = 100_000_000;

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Span, String> {
        let bad = |why: &str| format!("{text:?} is not a duration like 1y6m7d12h: {why}");
        let mut span = Span::default();
        let mut number = String::new();
        // The units in the order restic reads them; each may appear once.
        let mut next_unit = 0;
        let units = ['y', 'm', 'd', 'h'];
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let Some(at) = units.iter().position(|&u| u == c) else {
                return Err(bad(&format!("unknown unit {c:?} (use y, m, d, h)")));
            };
            if at < next_unit {
                return Err(bad("units must come once each, in the order y, m, d, h"));
            }
            if number.is_empty() {
                return Err(bad(&format!("no number before {c:?}")));
            }
            let value = number
                .parse::<u32>()
                .ok()
                .filter(|v| *v <= SPAN_PART_MAX)
                .ok_or_else(|| bad(&format!("{number}{c} is too large")))?;
            match c {
                'y' => span.years = value,
                'm' => span.months = value,
                'd' => span.days = value,
                _ => span.hours = value,
            }
            number.clear();
            next_unit = at + 1;
        }
        if !number.is_empty() {
            return Err(bad(&format!("{number} has no unit")));
        }
        if span == Span::default() {
            return Err(bad("it is empty or zero"));
        }
        Ok(span)
    }
}

impl Span {
    /// `t` minus this span in calendar arithmetic (a month before March 31 is February's
    /// last day, as chrono clamps); `None` when that lies before the calendar's start.
    pub fn before(self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        t.checked_sub_months(Months::new(months))?
            .checked_sub_days(Days::new(u64::from(self.days)))?
            .checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (v, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if v > 0 {
                write!(f, "{v}{u}")?;
            }
        }
        Ok(())
    }
}

/// `keep_within` as written (a string); absent or `null` is no rule.
pub(crate) fn span<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Span>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse().map_err(de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_as_restic_writes_them() {
        let s: Span = "2y5m7d3h".parse().expect("span");
        assert_eq!(
            s,
            Span {
                years: 2,
                months: 5,
                days: 7,
                hours: 3
            }
        );
        assert_eq!(s.to_string(), "2y5m7d3h");
        assert_eq!("30d".parse::<Span>().expect("d").days, 30);
        assert_eq!("36h".parse::<Span>().expect("h").hours, 36);
        for bad in [
            "",
            "0d",
            "7",
            "d",
            "3w",
            "1d2y",
            "1d1d",
            "99999999999d",
            "1.5d",
            "-1d",
            "7 d",
            "é",
        ] {
            let e = bad.parse::<Span>().expect_err(bad);
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }
}
