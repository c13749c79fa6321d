//! The bodies of the fuzz targets of `fuzz/` (cargo-fuzz, nightly) for what a burp server or
//! a config file sends us, shared with the tests that run their corpora on stable Rust. Each
//! takes arbitrary bytes, must not panic (release builds abort), and checks an invariant where
//! that is cheap.

use std::path::Path;

use crate::config::Config;
use crate::frame::{self, Assembler, Decoder, Event, Frame};
use crate::model::{self, BackupStats, History};
use crate::summary;

/// `burp_frames`: the status port's byte stream. Decoding it in one piece or in two gives the
/// same frames, each frame survives encode -> decode, and no assembled document exceeds the
/// assembler's limit.
pub fn frames(data: &[u8]) {
    let whole = decode_all(&[data]);
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    assert_eq!(
        whole,
        decode_all(&[a, b]),
        "frames depend on how the bytes arrived"
    );
    let limit = data.len() / 2;
    let mut asm = Assembler::new(limit);
    for f in whole.0.iter() {
        let wire = frame::encode(f.command, &f.payload).expect("a decoded frame encodes");
        assert_eq!(
            decode_all(&[&wire]).0.as_slice(),
            std::slice::from_ref(f),
            "encode -> decode changed a frame"
        );
        match asm.feed(f.clone()) {
            Ok(Some(Event::Document(doc))) => assert!(doc.len() <= limit, "document over limit"),
            Ok(_) => {}
            Err(_) => asm.reset(),
        }
    }
}

/// Frames decoded from `chunks` pushed one after the other, and the error that stopped it.
fn decode_all(chunks: &[&[u8]]) -> (Vec<Frame>, Option<String>) {
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

/// `burp_json`: a `c:` / `c:<client>` / `backup_stats` reply. Client names come out unique (a
/// repeated one would make Prometheus reject the scrape), and the `--once` summary carries no
/// control character or bidirectional override from the server but its own newlines.
pub fn json(data: &[u8]) {
    let Ok(list) = model::parse_clients(data) else {
        return;
    };
    let mut names = std::collections::HashSet::new();
    for c in &list.clients {
        assert!(names.insert(&c.name), "client {:?} listed twice", c.name);
        let _ = History::of(c);
        let _ = c.has_in_progress();
        for ch in &c.children {
            let _ = BackupStats::from_counters(&ch.counters).duration_seconds();
        }
        if let Some(b) = c.backups.first() {
            if let Ok(stats) = model::parse_backup_stats(data, &c.name, b.number) {
                let _ = stats.duration_seconds();
            }
        }
    }
    let text = summary::render_summary("server", "127.0.0.1:4972", 0, &list);
    let bad = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    assert!(!text.chars().any(bad), "unescaped server text in {text:?}");
}

/// `burp_config`: a `burp_exporter.yaml`. Parsing and validation end in a config or an error
/// whose message can be printed.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("burp_exporter.yaml");
    for strictness in [
        custos_kit::config::Strictness::Warn,
        custos_kit::config::Strictness::Strict,
    ] {
        if let Err(e) = Config::parse(file, text, strictness) {
            let _ = e.to_string();
        }
    }
}

/// Each target's corpus (`fuzz/corpus/<target>/`) as a test on stable.
#[cfg(test)]
mod tests {
    custos_testkit::corpus_tests! {
        burp_frames => super::frames,
        burp_json => super::json,
        burp_config => super::config,
    }
}
