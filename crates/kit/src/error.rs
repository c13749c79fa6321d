//! Error messages that carry their causes.

/// `outer: inner: innermost`: the error and its sources, each cause once (reqwest's and tar's
/// own messages stop at the top, where they say little).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;
    use std::io;

    #[test]
    fn causes_are_joined_once() {
        let inner = io::Error::other("no route to host");
        let outer = io::Error::other(Wrapper(inner));
        assert_eq!(chain(&outer), "connect failed: no route to host");
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect failed")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
