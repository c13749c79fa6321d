//! The last bytes a child printed on a stream, kept while the stream is drained to its end.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Mutex;

/// Called with (program, line) for each non-blank line read (a caller's debug log).
pub(crate) type LineHook = fn(&str, &str);

/// Longest line handed to a [`LineHook`] in one piece.
const LINE_MAX: u64 = 4096;

/// Reads `r` to its end, keeping its last `limit` bytes in `kept` (trimmed in batches; the
/// reader of `kept` cuts it with [`text`]). Lines go to `hook` as they arrive.
pub(crate) fn drain(
    r: impl Read,
    limit: usize,
    program: &str,
    hook: Option<LineHook>,
    kept: &Mutex<Vec<u8>>,
) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(LINE_MAX).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(hook) = hook {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end();
                    if !text.trim().is_empty() {
                        hook(program, text);
                    }
                }
                let Ok(mut tail) = kept.lock() else { break };
                tail.extend_from_slice(&line);
                // Trimmed in batches: each byte is moved at most a few times.
                if tail.len() > limit.saturating_mul(2).max(4096) {
                    keep_last(&mut tail, limit);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// The last `limit` bytes of `kept` as text: cut at a char boundary, invalid UTF-8 replaced.
pub(crate) fn text(kept: &Mutex<Vec<u8>>, limit: usize) -> String {
    let Ok(mut tail) = kept.lock() else {
        return String::new();
    };
    keep_last(&mut tail, limit);
    String::from_utf8_lossy(&tail).into_owned()
}

/// Keeps at most the last `limit` bytes, starting at a UTF-8 char boundary (a cut through
/// a multi-byte char drops its continuation bytes rather than showing a replacement).
fn keep_last(tail: &mut Vec<u8>, limit: usize) {
    if tail.len() <= limit {
        return;
    }
    let mut start = tail.len() - limit;
    while tail.get(start).is_some_and(|b| b & 0xC0 == 0x80) {
        start += 1;
    }
    tail.drain(..start);
}

/// stderr as one line for a message: its non-blank lines, trimmed, joined with `; `.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(r: impl Read, limit: usize, program: &str, hook: Option<LineHook>) -> String {
        let kept = Mutex::new(Vec::new());
        super::drain(r, limit, program, hook, &kept);
        text(&kept, limit)
    }

    #[test]
    fn keeps_the_tail_at_a_char_boundary() {
        // 3000 two-byte chars: any odd cut would split one.
        let text = "é".repeat(3000);
        let kept = drain(text.as_bytes(), 1001, "p", None);
        assert!(kept.len() <= 1001, "{}", kept.len());
        assert!(kept.len() >= 999);
        assert!(kept.chars().all(|c| c == 'é'), "{kept}");
        let mut lines = String::new();
        for i in 0..5000 {
            lines.push_str(&format!("line {i}\n"));
        }
        let kept = drain(lines.as_bytes(), 2048, "p", None);
        assert!(kept.ends_with("line 4999\n"));
        assert!(!kept.contains("line 10\n"));
        assert_eq!(one_line(" a \n\n b\n"), "a; b");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let kept = drain(&[b'a', 0xff, b'b'][..], 100, "p", None);
        assert_eq!(kept, "a\u{fffd}b");
    }
}
