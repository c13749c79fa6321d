//! Feeds a fuzz target's corpus (`fuzz/corpus/<target>/`) to the function the target calls, as
//! an ordinary test on stable Rust: every input the fuzzer kept, and every crash it found
//! (moved into the corpus), is checked on each `cargo test`, without nightly or libFuzzer.

use std::path::PathBuf;

/// The corpus directory of fuzz target `target`.
pub fn dir(target: &str) -> PathBuf {
    // CARGO_MANIFEST_DIR of this crate is crates/testkit: the workspace root is two up.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Calls `body` with every file of the corpus of `target`; a panic names the file that caused
/// it (to reproduce: `cargo +nightly fuzz run <target> <file>`). Fails on an empty or missing
/// corpus, so a renamed directory cannot turn the test into one that checks nothing.
pub fn run(target: &str, body: impl Fn(&[u8])) {
    let dir = dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&data)));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("fuzz target {target}: {} panicked: {msg}", path.display());
        }
    }
    eprintln!("fuzz corpus {target}: {} inputs passed", files.len());
}

/// One `#[test]` per fuzz target, named after it, running its corpus through [`run`]:
/// `custos_testkit::corpus_tests! { burp_json => super::json }`.
#[macro_export]
macro_rules! corpus_tests {
    ($($target:ident => $body:path),+ $(,)?) => {
        $(
            #[test]
            fn $target() {
                $crate::corpus::run(stringify!($target), $body);
            }
        )+
    };
}
