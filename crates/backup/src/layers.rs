//! The layer rule, checked on the source: every `crate::` path in a file names a module of
//! the file's own layer or of one below it (docs/ARCHITECTURE.md, "Layers"), and no import
//! cycle between files crosses a layer. Test code (`tests.rs`, `*_test.rs`, and what follows
//! `#[cfg(test)]` in a file, where the test module sits by convention) may reach up: a
//! handler's test that parses a whole job file is such a test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, top first: a module prefix (a path under `src/` without `.rs`) and its layer.
/// A file belongs to the longest prefix that matches it.
const LAYERS: &[(&str, usize)] = &[
    ("main", 0),
    ("lib", 0),
    ("commands", 1),
    ("restore", 1),
    ("coverage", 1),
    ("schedule", 1),
    ("status", 1),
    ("engine", 2),
    ("job", 3),
    ("source", 4),
    ("destination", 4),
    ("notify", 4),
    ("outcome", 5),
    ("cancel", 5),
    ("naming", 5),
    ("crypto", 5),
    ("table", 5),
    ("layers", 0),
];

/// Names of the layers, by number, for messages.
const NAMES: &[&str] = &[
    "cli",
    "commands",
    "engine",
    "job",
    "handlers",
    "shared types",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `engine/runner/tests.rs` -> `engine/runner/tests`; `source/mod.rs` -> `source`.
fn module_of(rel: &Path) -> String {
    let s = rel.with_extension("").to_string_lossy().replace('\\', "/");
    s.strip_suffix("/mod").map(str::to_owned).unwrap_or(s)
}

/// The layer of a module path (`engine/runner`, `source`), by its longest known prefix.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .filter(|(p, _)| module == *p || module.starts_with(&format!("{p}/")))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, l)| *l)
}

fn is_test_file(module: &str) -> bool {
    let last = module.rsplit('/').next().unwrap_or(module);
    last == "tests" || last.ends_with("_test")
}

/// The text of a file up to its inline test module (`#[cfg(test)]` then `mod x {`, last in
/// the file by convention); test-only items elsewhere count as production code.
fn production_text(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let start = at + i;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        let is_module = after.starts_with("mod ")
            && after
                .lines()
                .next()
                .is_some_and(|l| l.trim_end().ends_with('{'));
        if is_module {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// Every `crate::a::b` path in `text` (comments skipped), with `use crate::{a, b::{c, d}}`
/// groups expanded, as `a/b/c`.
fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.starts_with("//"))
        .map(|l| l.split(" // ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        // `custos_kit::...` or `some_crate::` are other crates.
        let other = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[i + "crate::".len()..];
        if !other {
            expand("", rest, &mut out);
        }
    }
    out
}

/// Adds the path at the start of `text` (after `prefix`), each member of a brace group.
fn expand(prefix: &str, text: &str, out: &mut Vec<String>) {
    if text.is_empty() {
        // After a trailing comma in a group.
        return;
    }
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let head: Vec<&str> = text[..end]
        .split("::")
        .filter(|s| !s.is_empty() && *s != "self")
        .collect();
    let path = [prefix, &head.join("/")]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let Some(group) = text[end..].strip_prefix('{') else {
        if !path.is_empty() {
            out.push(path);
        }
        return;
    };
    // Split the group at its top-level commas, up to its closing brace.
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                expand(&path, group[start..i].trim(), out);
                return;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&path, group[start..i].trim(), out);
                start = i + 1;
            }
            _ => {}
        }
    }
}

/// The file module a `crate::` path lands in: its longest prefix that is a file.
fn target_module(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segs: Vec<&str> = path.split('/').collect();
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("/"))
        .find(|m| modules.contains(m))
}

/// Each production file's module and the file modules it imports through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let modules: BTreeSet<String> = all
        .iter()
        .map(|p| module_of(p.strip_prefix(&root).expect("under src")))
        .collect();
    let mut g = BTreeMap::new();
    for p in &all {
        let m = module_of(p.strip_prefix(&root).expect("under src"));
        if is_test_file(&m) {
            continue;
        }
        let text = std::fs::read_to_string(p).expect("read source");
        let deps = crate_paths(production_text(&text))
            .iter()
            .filter_map(|path| target_module(path, &modules))
            .filter(|t| *t != m && !is_test_file(t))
            .collect();
        g.insert(m, deps);
    }
    g
}

/// Strongly connected components (Tarjan), each sorted.
fn components(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut c = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                c.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            c.sort();
            s.out.push(c);
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn every_file_has_a_layer() {
    let unplaced: Vec<String> = graph()
        .into_keys()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "files in no layer (add them to LAYERS in src/layers.rs and docs/ARCHITECTURE.md): {unplaced:?}"
    );
}

#[test]
fn imports_only_point_down() {
    let mut upward = Vec::new();
    for (m, deps) in graph() {
        let Some(from) = layer_of(&m) else { continue };
        for d in deps {
            let Some(to) = layer_of(&d) else { continue };
            if to < from {
                upward.push(format!(
                    "src/{m}.rs ({}) imports crate::{} ({})",
                    NAMES[from],
                    d.replace('/', "::"),
                    NAMES[to]
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_import_cycle_crosses_a_layer() {
    let g = graph();
    let cycles: Vec<Vec<String>> = components(&g).into_iter().filter(|c| c.len() > 1).collect();
    let largest = cycles.iter().map(Vec::len).max().unwrap_or(1);
    eprintln!("largest import cycle between files: {largest} file(s)");
    for c in &cycles {
        let layers: BTreeSet<Option<usize>> = c.iter().map(|m| layer_of(m)).collect();
        assert_eq!(layers.len(), 1, "an import cycle crosses layers: {c:?}");
    }
}

/// The checker itself: it sees imports in `use` groups and in expressions, skips comments
/// and other crates, and finds a cycle.
#[test]
fn the_checker_finds_paths_and_cycles() {
    let text = "use crate::{naming::RunStamp, engine::{\n    runner,\n    report::Row,\n}};\n\
                // use crate::job;\n\
                let x = crate::outcome::Failure::new(); // crate::table\n\
                use custos_kit::config::Entry;\n";
    assert_eq!(
        crate_paths(text),
        [
            "naming/RunStamp",
            "engine/runner",
            "engine/report/Row",
            "outcome/Failure/new"
        ]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    g.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    let big: Vec<Vec<String>> = components(&g).into_iter().filter(|c| c.len() > 1).collect();
    assert_eq!(
        big,
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
    assert_eq!(layer_of("engine/runner/tests"), Some(2));
    let file = "use crate::naming;\n#[cfg(test)]\nfn only_in_tests() { crate::job::x(); }\n\
                #[cfg(test)]\nmod tests {\n    use crate::engine::runner;\n}\n";
    assert_eq!(crate_paths(production_text(file)), ["naming", "job/x"]);
    assert_eq!(layer_of("source"), Some(4));
}
