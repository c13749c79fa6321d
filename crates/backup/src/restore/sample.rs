//! Which copies `verify --sample PERCENT` reads: for each source at each destination,
//! ceil(PERCENT % of its copies) and at least one, chosen uniformly at random.
//!
//! The share is kept in hundredths of a percent, so `10 %` of 70 copies is exactly 7 (a
//! float's `0.1 * 70` is 7.000000000000001, whose ceiling would read an eighth). The choice
//! for one source and destination is drawn from its own generator, seeded from the run's
//! seed, the source id and the destination id: `--seed N` picks the same copies again, and
//! whether another source or destination is verified too (`--source`) changes nothing.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng as _;
use sha2::{Digest as _, Sha256};

/// A share of copies, `0 < p <= 100` percent, with at most two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent {
    /// Hundredths of a percent: 1..=10000.
    hundredths: u32,
}

/// The most a share can be: every copy.
const ALL: u32 = 100 * 100;

impl Percent {
    /// How many of `n` copies to read: ceil(share of n), at least one (none of none).
    pub fn of(self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n = n as u128;
        let k = (n * u128::from(self.hundredths)).div_ceil(u128::from(ALL));
        usize::try_from(k.clamp(1, n)).unwrap_or(usize::MAX)
    }
}

impl Percent {
    /// The share in percent, for reports (`12.5`): exact to its two decimals as shown.
    pub fn as_f64(self) -> f64 {
        f64::from(self.hundredths) / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, part) = (self.hundredths / 100, self.hundredths % 100);
        match part {
            0 => write!(f, "{whole}"),
            p if p % 10 == 0 => write!(f, "{whole}.{}", p / 10),
            p => write!(f, "{whole}.{p:02}"),
        }
    }
}

/// `--sample` that is not a share of copies (the CLI shows the value beside it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a percentage, more than 0 and at most 100, with at most two decimals (10, 2.5)")]
pub struct BadPercent;

impl FromStr for Percent {
    type Err = BadPercent;

    fn from_str(s: &str) -> Result<Self, BadPercent> {
        let bad = || BadPercent;
        let t = s.trim().trim_end_matches('%');
        let (whole, part) = match t.split_once('.') {
            Some((_, "")) => return Err(bad()),
            Some(split) => split,
            None => (t, ""),
        };
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 3 || part.len() > 2 || !digits(whole) || !digits(part)
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let part: u32 = format!("{part:0<2}").parse().map_err(|_| bad())?;
        let hundredths = whole * 100 + part;
        if hundredths == 0 || hundredths > ALL {
            return Err(bad());
        }
        Ok(Percent { hundredths })
    }
}

/// The indices (ascending) of the copies to read out of `n`, for `source_id` at
/// `destination`, drawn from `seed`.
pub fn choose(
    n: usize,
    share: Percent,
    seed: u64,
    source_id: &str,
    destination: &str,
) -> Vec<usize> {
    let mut rng = generator(seed, source_id, destination);
    let mut chosen = rand::seq::index::sample(&mut rng, n, share.of(n)).into_vec();
    chosen.sort_unstable();
    chosen
}

/// A generator of its own for one source and destination: sha256 of the seed and both ids
/// (each length-prefixed, so `a`+`bc` and `ab`+`c` differ).
fn generator(seed: u64, source_id: &str, destination: &str) -> rand::rngs::StdRng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    for id in [source_id, destination] {
        h.update((id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
    }
    rand::rngs::StdRng::from_seed(h.finalize().into())
}

/// A seed for a verify not given `--seed`.
pub fn random_seed() -> u64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Percent {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_share_reads_the_ceiling_and_at_least_one() {
        assert_eq!(p("10").of(70), 7, "exact, no float rounding");
        assert_eq!(p("10").of(71), 8);
        assert_eq!(p("10").of(3), 1, "at least one");
        assert_eq!(p("0.01").of(5), 1);
        assert_eq!(p("50").of(5), 3);
        assert_eq!(p("100").of(5), 5);
        assert_eq!(p("99.99").of(5), 5);
        assert_eq!(p("7").of(100), 7);
        assert_eq!(p("33.33").of(3), 1);
        assert_eq!(p("33.34").of(3), 2);
        assert_eq!(p("1").of(0), 0, "nothing of nothing");
        assert_eq!(p("100").of(usize::MAX), usize::MAX);
        for n in 1..200 {
            for s in ["0.5", "1", "12.5", "25", "60", "100"] {
                let k = p(s).of(n);
                assert!((1..=n).contains(&k), "{s} of {n}: {k}");
            }
        }
    }

    #[test]
    fn percentages_out_of_bounds_or_malformed_are_refused() {
        for bad in [
            "0", "0.0", "0.00", "100.01", "101", "1000", "-5", "", ".5", "5.", "1.234", "abc",
            "1e1", "NaN", "inf", "+5", "5 5", "１０",
        ] {
            assert!(bad.parse::<Percent>().is_err(), "{bad:?} accepted");
        }
        let e = "150".parse::<Percent>().unwrap_err().to_string();
        assert!(e.starts_with("expected a percentage, more than 0"), "{e}");
        assert_eq!(p("10%"), p("10"));
        assert_eq!(p("2.5").to_string(), "2.5");
        assert_eq!(p("2.05").to_string(), "2.05");
        assert_eq!(p("100").to_string(), "100");
        assert_eq!(p("0.5").of(1000), 5);
        for s in ["0.01", "2.5", "10", "33.33", "66.67", "99.99", "100"] {
            assert_eq!(p(s).as_f64().to_string(), s, "shown as written");
        }
    }

    #[test]
    fn a_seed_chooses_the_same_copies_and_each_pair_draws_on_its_own() {
        let share = p("30");
        let a = choose(20, share, 7, "www", "disk");
        assert_eq!(a.len(), 6);
        assert!(
            a.windows(2).all(|w| w[0] < w[1]),
            "ascending, distinct: {a:?}"
        );
        assert!(a.iter().all(|&i| i < 20));
        assert_eq!(a, choose(20, share, 7, "www", "disk"));
        let others: Vec<Vec<usize>> = (8..20)
            .map(|seed| choose(20, share, seed, "www", "disk"))
            .collect();
        assert!(others.iter().any(|o| *o != a), "seeds all chose {a:?}");
        let pairs = [("www", "s3"), ("db", "disk"), ("ww", "wdisk")];
        assert!(
            pairs.iter().any(|(s, d)| choose(20, share, 7, s, d) != a),
            "the pair does not change the choice"
        );
        assert_eq!(choose(4, p("100"), 1, "a", "b"), vec![0, 1, 2, 3]);
        assert!(choose(0, p("100"), 1, "a", "b").is_empty());
    }

    #[test]
    fn every_copy_is_equally_likely() {
        // 4000 draws of 1 of 8: each index about 500 times (binomial sd ~21; allow 5 sd).
        let mut hits = [0u32; 8];
        for seed in 0..4000 {
            for i in choose(8, p("10"), seed, "www", "disk") {
                hits[i] += 1;
            }
        }
        assert!(hits.iter().all(|&h| (395..=605).contains(&h)), "{hits:?}");
    }
}
