//! The crate's module graph has no cycle: no module imports one that
//! imports it back, neither between the top-level modules (`proxy`,
//! `auth`, `config`, ...) nor between the files of one module. A cycle is
//! where a change in one place starts to need a change in the other; this
//! test keeps the layering that `src/lib.rs` describes.
//!
//! It reads `src/` as text: every `crate::`, `super::` and `self::` path in
//! `use` items and in code, outside the unit-test modules (a test module may
//! reach anything).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path such as `["proxy", "headers"]`; the crate root is `[]`.
type Module = Vec<String>;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&root);
    let modules: BTreeMap<Module, String> = files
        .iter()
        .filter(|path| !is_binary_root(&root, path))
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read a source file");
            (module_of(&root, path), without_test_modules(&text))
        })
        .collect();
    let known: BTreeSet<Module> = modules.keys().cloned().collect();

    let mut files_graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &modules {
        for path in referenced_paths(text) {
            if let Some(target) = resolve(module, &path, &known)
                && target != *module
                && !is_ancestor(&target, module)
            {
                files_graph
                    .entry(module.clone())
                    .or_default()
                    .insert(target);
            }
        }
    }

    // Between top-level modules.
    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, targets) in &files_graph {
        for to in targets {
            let (a, b) = (top_of(from), top_of(to));
            if a != b && !a.is_empty() && !b.is_empty() {
                top.entry(a).or_default().insert(b);
            }
        }
    }
    let mut problems: Vec<String> = cycles(&top)
        .into_iter()
        .map(|c| format!("top-level modules: {}", show(&c)))
        .collect();
    // Between the files of one module. A child's use of its parent's items
    // (`super::Outcome`) is how Rust modules are built and is not counted.
    problems.extend(
        cycles(&files_graph)
            .into_iter()
            .map(|c| format!("files: {}", show(&c))),
    );
    if !problems.is_empty() {
        for (from, to) in &top {
            eprintln!(
                "{} -> {}",
                show(std::slice::from_ref(from)),
                show(&to.iter().cloned().collect::<Vec<_>>())
            );
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n  {}",
        problems.join("\n  ")
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `main.rs` is the binary's crate, not a module of the library.
fn is_binary_root(root: &Path, path: &Path) -> bool {
    path == root.join("main.rs")
}

fn module_of(root: &Path, path: &Path) -> Module {
    let relative = path.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The file without its `#[cfg(test)] mod ... { }` blocks.
fn without_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find(['{', ';']) else {
            break;
        };
        if after.as_bytes()[open] == b';' {
            // `#[cfg(test)] mod tests;` or a single item: skip to its end.
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path that starts at `crate`, `super` or `self`, with `use` trees
/// (`use crate::{a::B, c::{D, E}}`) expanded.
fn referenced_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| bytes[i..].starts_with(p.as_bytes()));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        match starts {
            Some(prefix) if boundary && !bytes[..i].ends_with(b"::") => {
                let head = prefix.trim_end_matches("::").to_string();
                let (tree, used) = read_tree(&code[i + prefix.len()..]);
                for tail in tree {
                    let mut path = vec![head.clone()];
                    path.extend(tail);
                    paths.push(path);
                }
                i += prefix.len() + used.max(1);
            }
            _ => i += 1,
        }
    }
    paths
}

/// Reads `a::b::{c, d::e}` from the start of `text`: the expanded tails and
/// how many bytes were read.
fn read_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut prefix: Vec<String> = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            prefix.push(text[start..i].to_string());
        }
        let group = if text[i..].starts_with("::{") {
            3
        } else if i == 0 && text.starts_with('{') {
            1
        } else {
            0
        };
        if group > 0 {
            i += group;
            let mut out = Vec::new();
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    i += 1;
                    break;
                }
                let (inner, used) = read_tree(&text[i..]);
                for tail in inner {
                    let mut path = prefix.clone();
                    path.extend(tail);
                    out.push(path);
                }
                i += used.max(1);
                // `X as Y`: skip to the next separator.
                while i < bytes.len() && !matches!(bytes[i], b',' | b'}') {
                    i += 1;
                }
            }
            return (out, i);
        }
        if text[i..].starts_with("::") {
            i += 2;
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The longest known module that `path`, read inside `from`, names.
fn resolve(from: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let mut base: Module = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => from.clone(),
        Some("super") => {
            let mut base = from.clone();
            base.pop();
            base
        }
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = base.clone();
    let mut candidate = base;
    for part in rest {
        candidate.push(part.clone());
        if known.contains(&candidate) {
            best = candidate.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn is_ancestor(ancestor: &Module, module: &Module) -> bool {
    ancestor.len() < module.len() && module.starts_with(ancestor)
}

fn top_of(module: &Module) -> Module {
    module.iter().take(1).cloned().collect()
}

/// One cycle per strongly connected component of more than one module.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let nodes: BTreeSet<&Module> = graph
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.iter()))
        .collect();
    let reaches = |from: &Module, to: &Module| -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(node) = stack.pop() {
            if &node == to {
                return true;
            }
            if seen.insert(node.clone())
                && let Some(next) = graph.get(&node)
            {
                stack.extend(next.iter().cloned());
            }
        }
        false
    };
    let mut done: BTreeSet<Module> = BTreeSet::new();
    let mut out = Vec::new();
    for node in nodes {
        if done.contains(node) {
            continue;
        }
        let component: Vec<Module> = graph
            .keys()
            .filter(|other| *other != node && reaches(node, other) && reaches(other, node))
            .cloned()
            .collect();
        if !component.is_empty() {
            let mut all = vec![node.clone()];
            all.extend(component);
            done.extend(all.iter().cloned());
            out.push(all);
        }
    }
    out
}

fn show(component: &[Module]) -> String {
    component
        .iter()
        .map(|m| {
            if m.is_empty() {
                "crate".to_string()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" <-> ")
}

#[test]
fn the_reader_expands_use_trees_and_resolves_super() {
    let paths = referenced_paths(
        "use crate::{a::B, c::{d::E, F as G}};\nfn f() { super::x::y(); }\n// crate::comment::Ignored\n",
    );
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "crate::a::B",
            "crate::c::d::E",
            "crate::c::F",
            "super::x::y"
        ]
    );
    let known: BTreeSet<Module> = [vec!["a".to_string()], vec!["x".to_string()]]
        .into_iter()
        .collect();
    let from = vec!["p".to_string(), "q".to_string()];
    assert_eq!(
        resolve(&from, &paths[0], &known),
        Some(vec!["a".to_string()])
    );
    assert_eq!(
        resolve(&vec!["x".to_string(), "q".to_string()], &paths[3], &known),
        Some(vec!["x".to_string()])
    );
    let with_tests = "fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::z::Z; { }\n}\nfn b() {}\n";
    assert_eq!(without_test_modules(with_tests), "fn a() {}\n\nfn b() {}\n");
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let m = |s: &str| vec![s.to_string()];
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    graph.entry(m("a")).or_default().insert(m("b"));
    graph.entry(m("b")).or_default().insert(m("c"));
    assert!(cycles(&graph).is_empty());
    graph.entry(m("c")).or_default().insert(m("a"));
    assert_eq!(cycles(&graph), vec![vec![m("a"), m("b"), m("c")]]);
}
