//! The bodies of the fuzz targets of `fuzz/` (cargo-fuzz, nightly) for what HAProxy or a
//! config file sends us, shared with the tests that run their corpora on stable Rust. Each
//! takes arbitrary bytes, must not panic (release builds abort), and checks an invariant where
//! that is cheap.

use std::path::Path;

use crate::config::Config;
use crate::csv::{self, Reader};

/// `haproxy_csv`: a stats page (`;csv` or `show stat`). The streaming reader gives the same
/// page however the bytes are cut (even inside a character) as [`csv::parse`] of the whole
/// text, keeps each `pxname`/`svname` once, and holds to its row limit.
pub fn stats_csv(data: &[u8]) {
    let whole = {
        let mut r = Reader::new(usize::MAX).with_extra_columns();
        r.feed(data);
        r.finish()
    };
    // Cut points taken from the data itself, so the fuzzer explores them too.
    let step = data.first().map_or(1, |&b| usize::from(b % 7) + 1);
    let mut pieces = Reader::new(usize::MAX).with_extra_columns();
    for chunk in data.chunks(step) {
        pieces.feed(chunk);
    }
    assert_eq!(
        whole,
        pieces.finish(),
        "page depends on how the bytes arrived"
    );
    // The lossy text of the page reads the same without the extra columns.
    let plain = csv::parse(&String::from_utf8_lossy(data));
    match (&whole, &plain) {
        (Ok(w), Ok(p)) => {
            assert_eq!(
                w.samples.len(),
                p.samples.len(),
                "rows differ with extra columns"
            );
            let mut seen = std::collections::HashSet::new();
            for s in &w.samples {
                assert!(
                    seen.insert((&s.proxy, &s.svname)),
                    "{}/{} kept twice",
                    s.proxy,
                    s.svname
                );
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("with and without extra columns disagree: {whole:?} vs {plain:?}"),
    }
    let limit = step;
    let mut limited = Reader::new(limit);
    limited.feed(data);
    if let Ok(page) = limited.finish() {
        assert!(page.samples.len() <= limit, "row limit {limit} exceeded");
    }
}

/// `haproxy_info`: a `show info` answer.
pub fn show_info(data: &[u8]) {
    let _ = crate::info::parse(&String::from_utf8_lossy(data));
}

/// `haproxy_config`: a `haproxysessionmon` YAML config. Parsing and validation end in a config
/// or an error whose message can be printed, and every unknown key can be named.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("haproxysessionmon.yml");
    for strict in [false, true] {
        match Config::parse(file, text, strict) {
            Ok((_, unknown)) => unknown.iter().for_each(|k| drop(k.to_string())),
            Err(e) => drop(e.to_string()),
        }
    }
}

/// Each target's corpus (`fuzz/corpus/<target>/`) as a test on stable.
#[cfg(test)]
mod tests {
    custos_testkit::corpus_tests! {
        haproxy_csv => super::stats_csv,
        haproxy_info => super::show_info,
        haproxy_config => super::config,
    }
}
