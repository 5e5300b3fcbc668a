//! The layout the README's architecture section promises, checked on the source itself: every
//! module opens with a doc comment saying what it owns, no module imports one that imports it
//! back (directly or around a longer loop), no source file holds more than about 500 lines of
//! code before its tests, and the command line's entry point only parses and dispatches.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lines of code a source file may hold before its `#[cfg(test)]` module.
const MAX_CODE_LINES: usize = 520;
/// The command line's entry point: parse and dispatch, nothing more.
const MAX_CLI_ENTRY_LINES: usize = 100;

/// Every library module: its path (`ledger::dynamodb::scan`) and its code before its tests.
fn library_modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "bin") {
                    walk(&path, files);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&root).expect("under src").with_extension("");
            let mut name = relative
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "::");
            if name == "lib" {
                return None;
            }
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_owned();
            }
            let text = fs::read_to_string(&path).expect("a source file");
            Some((name, code_before_tests(&text).to_owned()))
        })
        .collect()
}

fn code_before_tests(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text)
}

/// The module a path names: its longest prefix that is a module.
fn module_of(path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

/// The modules each module uses, through `crate::` and `super::` paths (comments left out),
/// leaving out its own parents and children.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, code) in modules {
        let parent = name.rsplit_once("::").map_or("", |(parent, _)| parent);
        let mut used = BTreeSet::new();
        for line in code.lines().filter(|line| !line.trim_start().starts_with("//")) {
            for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
                for (at, _) in line.match_indices(prefix) {
                    let rest = &line[at + prefix.len()..];
                    let end = rest
                        .find(|c: char| {
                            !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{' || c == ',' || c == ' ')
                        })
                        .unwrap_or(rest.len());
                    let path = &rest[..end];
                    let (head, group) = path.split_once("::{").unwrap_or((path, ""));
                    let head = head.trim_end_matches(':');
                    let full = |tail: &str| {
                        [base.as_str(), head, tail]
                            .into_iter()
                            .filter(|part| !part.is_empty())
                            .collect::<Vec<_>>()
                            .join("::")
                    };
                    used.extend(module_of(&full(""), modules));
                    for item in group
                        .split(',')
                        .map(|item| item.trim().split("::").next().unwrap_or(""))
                    {
                        if !item.is_empty() && item != "self" {
                            used.extend(module_of(&full(item), modules));
                        }
                    }
                }
            }
        }
        used.retain(|other: &String| {
            other != name
                && !other.starts_with(&format!("{name}::"))
                && !name.starts_with(&format!("{other}::"))
        });
        graph.insert(name.clone(), used);
    }
    graph
}

/// A loop of imports, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|visited| visited == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn every_module_says_what_it_owns() {
    let silent: Vec<String> = library_modules()
        .into_iter()
        .filter(|(_, code)| !code.trim_start().starts_with("//!"))
        .map(|(name, _)| name)
        .collect();
    assert!(silent.is_empty(), "modules without a //! doc comment: {silent:?}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = library_modules();
    let graph = imports(&modules);
    // The check sees imports at all: the pipeline uses the ledger.
    assert!(graph["pipeline"].contains("ledger"), "{:?}", graph["pipeline"]);
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn no_source_file_is_a_warehouse() {
    let large: Vec<(String, usize)> = library_modules()
        .into_iter()
        .map(|(name, code)| (name, code.lines().count()))
        .filter(|(_, lines)| *lines > MAX_CODE_LINES)
        .collect();
    assert!(
        large.is_empty(),
        "modules over {MAX_CODE_LINES} lines of code: {large:?}"
    );
    let entry = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/flow-metrics.rs"))
        .expect("the CLI's entry point");
    assert!(
        entry.lines().count() <= MAX_CLI_ENTRY_LINES,
        "src/bin/flow-metrics.rs parses and dispatches only"
    );
}

#[test]
fn a_loop_of_imports_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(node, edges)| (node.to_owned(), edges.iter().map(|e| (*e).to_owned()).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
