//! Makes each binary's `main.rs` includable by the generator (`src/main.rs`): its clap `Cli`
//! is private to that binary, so the generator compiles the same file as a module of its own,
//! next to a `pub fn` that hands out the `clap::Command`. The definitions are never copied by
//! hand: a flag added to a binary shows in its man page and completions at the next build.
//! `include!` takes no inner attributes (`//!`, `#![..]`), and the binaries' own `#[cfg(test)]`
//! tests belong to them, so both are left out of the copy.

use std::path::Path;

/// Binary name and crate directory.
const MAINS: &[(&str, &str)] = &[
    ("burp_exporter", "../burp"),
    ("haproxysessionmon", "../haproxy"),
    ("prometheus_smart_exporter", "../smart"),
    ("backup", "../backup"),
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for (name, dir) in MAINS {
        // clap's bare `about` is the compiling crate's description, here ours: hand the
        // generator the binary's own (`CUSTOS_DESC_<bin>`).
        let manifest = format!("{dir}/Cargo.toml");
        println!("cargo:rerun-if-changed={manifest}");
        let toml = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{manifest}: {e}"));
        let desc = toml
            .lines()
            .find_map(|l| l.strip_prefix("description = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{manifest}: no one-line description"));
        println!("cargo:rustc-env=CUSTOS_DESC_{name}={desc}");
        let path = format!("{dir}/src/main.rs");
        println!("cargo:rerun-if-changed={path}");
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut kept = String::with_capacity(src.len());
        let mut lines = src.lines().peekable();
        while let Some(line) = lines.next() {
            let t = line.trim_start();
            if t == "#[cfg(test)]" && lines.peek().is_some_and(|n| n.starts_with("mod tests")) {
                break; // the binary's own unit tests run in its crate
            }
            if t.starts_with("//!") || t.starts_with("#![") {
                continue;
            }
            // A `mod x;` would resolve against OUT_DIR, not the binary's src/.
            assert!(
                !(t.starts_with("mod ") && t.ends_with(';')),
                "{path}: `{t}`: the man page generator includes main.rs, which must not declare file modules (put them in the library)"
            );
            kept.push_str(line);
            kept.push('\n');
        }
        std::fs::write(Path::new(&out).join(format!("{name}_main.rs")), kept)
            .expect("write to OUT_DIR");
    }
}
