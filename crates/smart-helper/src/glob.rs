//! Shell-style globs (`*`, `?`) for `--include`/`--exclude`.
//!
//! A regex engine would triple the code a root process links; device names need no more
//! than `/dev/sd*` or `/dev/nvme?`.

/// Whether `name` matches `pattern`: `*` any run of characters (also `/`), `?` one character,
/// everything else itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("/dev/sd*", "/dev/sda"));
        assert!(matches("/dev/sd*", "/dev/sd"));
        assert!(!matches("/dev/sd*", "/dev/nvme0"));
        assert!(matches("/dev/nvme?", "/dev/nvme0"));
        assert!(!matches("/dev/nvme?", "/dev/nvme10"));
        assert!(matches("*", ""));
        assert!(matches("/dev/*a*b", "/dev/xaxxab"));
        assert!(!matches("/dev/*a*b", "/dev/xaxxa"));
        assert!(matches("/dev/sda", "/dev/sda"));
        assert!(!matches("/dev/sda", "/dev/sdaa"));
    }

    proptest::proptest! {
        /// Arbitrary UTF-8 patterns and names: no panic, and a pattern without wildcards
        /// matches exactly itself.
        #[test]
        fn any_text(p in "\\PC{0,12}", n in "\\PC{0,12}") {
            let _ = matches(&p, &n);
            if !p.contains(['*', '?']) {
                proptest::prop_assert_eq!(matches(&p, &n), p == n);
                proptest::prop_assert!(matches(&p, &p));
            }
        }
    }
}
