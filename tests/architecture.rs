//! The module graph: no import cycle between the top-level modules of
//! `src/`, and the product never imports the simulator (the simulator may
//! import the product). Read from the sources, as `use crate::` edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code (tests left out) names.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap();
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let named = edges.entry(module.clone()).or_default();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    named.insert(target);
                }
            }
        }
    }
    edges
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let edges = edges();
    assert!(edges.len() > 10, "{edges:?}");
    // Depth-first search for a path back to where it started.
    fn path_back(
        edges: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(from).into_iter().flatten() {
            if next == to || (seen.insert(next.clone()) && path_back(edges, next, to, seen)) {
                return true;
            }
        }
        false
    }
    for (module, targets) in &edges {
        for target in targets {
            assert!(
                !path_back(&edges, target, module, &mut BTreeSet::new()),
                "{module} imports {target}, which leads back to {module}: {edges:#?}"
            );
        }
    }
}

#[test]
fn the_product_never_imports_the_simulator() {
    for (module, targets) in edges() {
        if module != "sim" {
            assert!(!targets.contains("sim"), "{module} imports the simulator");
        }
    }
}

/// Every `.rs` file under `src/`, as (path relative to `src/`, text).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&src).unwrap().display().to_string();
                files.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn unsafe_code_lives_in_two_files() {
    let with_unsafe: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.contains("unsafe {"))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(with_unsafe, ["envelope/borrowed.rs", "store/handle.rs"]);
}

#[test]
fn no_source_file_is_over_600_lines_outside_its_tests() {
    for (path, text) in sources() {
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let lines = code.lines().count();
        assert!(
            lines <= 600,
            "src/{path} has {lines} lines outside its tests"
        );
    }
}
