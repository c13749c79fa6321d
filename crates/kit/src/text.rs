//! Cutting text that came from outside (a peer's reply, stderr, a file name) to a byte budget.
//! Slicing a `str` inside a character panics, and release builds abort on panic, so every
//! such cut goes through [`prefix`].

/// The longest prefix of `s` that is at most `max` bytes and ends between characters.
pub fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn cuts_between_characters_only() {
        let s = format!("{}é tail", "a".repeat(199));
        assert_eq!(prefix(&s, 200), "a".repeat(199));
        assert_eq!(prefix(&s, 201), format!("{}é", "a".repeat(199)));
        assert_eq!(prefix("short", 200), "short");
        assert_eq!(prefix("😀", 3), "");
        assert_eq!(prefix("", 0), "");
    }
}
