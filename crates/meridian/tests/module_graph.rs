//! No two top-level modules of a workspace crate import each other, directly
//! or around a cycle. Modules are the files and folders under `src/`; an
//! edge is any `crate::NAME` path (in `use` trees too) from one module's
//! files to a sibling module. Run it alone with
//! `cargo test -p meridian --test module_graph`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module name → the modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src` belongs to; `None` for the root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs");
    if matches!(name, "lib" | "main") {
        return None;
    }
    // `foo_tests.rs` is `foo`'s test module, included with `#[path]`.
    Some(name.trim_end_matches("_tests").to_string())
}

/// Top-level names a `crate::` path or use tree starting at `rest` names.
fn names_after_crate(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(inner) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    // A use tree: the first identifier of every item at depth one.
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, true);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && !c.is_whitespace() => {
                out.push(ident(&inner[i..]));
                start = false;
            }
            _ => {}
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for f in &files {
        let Some(from) = module_of(src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for to in referenced(&text) {
            if to != from && modules.contains(&to) {
                g.get_mut(&from).unwrap().insert(to);
            }
        }
    }
    g
}

/// The top-level names a file's `crate::` paths and use trees refer to. The
/// file is read whole (without line comments), so a use tree spread over
/// several lines is seen whole.
fn referenced(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        // `meridian_x::crate::` does not occur; skip `$crate::` in macros.
        if code[..i].ends_with('$') {
            continue;
        }
        out.extend(names_after_crate(&code[i + "crate::".len()..]));
    }
    out
}

/// Every cycle, as the strongly connected components of more than one module.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for n in &g[&m] {
                if seen.insert(n.clone()) {
                    stack.push(n.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for m in g.keys() {
        if placed.contains(m) || !reachable[m].contains(m) {
            continue;
        }
        let scc: Vec<String> = g
            .keys()
            .filter(|n| reachable[m].contains(*n) && reachable[*n].contains(m))
            .cloned()
            .collect();
        placed.extend(scc.iter().cloned());
        out.push(scc);
    }
    out
}

// Reading the one variable that points the check elsewhere; nothing sets it.
#[allow(clippy::disallowed_methods)]
fn crates() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let root = std::env::var_os("MODULE_GRAPH_ROOT").map_or(here.to_path_buf(), PathBuf::from);
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn no_module_cycles_in_any_crate() {
    let mut found = Vec::new();
    for src in crates() {
        for c in cycles(&graph(&src)) {
            found.push(format!(
                "{}: {}",
                src.parent().unwrap().display(),
                c.join(" ⇄ ")
            ));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_edges_and_cycles() {
    assert_eq!(names_after_crate("account::{self, Finished};"), ["account"]);
    assert_eq!(
        names_after_crate("{auth, plan::{self, Plan}, respond};"),
        ["auth", "plan", "respond"]
    );
    // A use tree over several lines, as rustfmt writes long ones; a comment
    // naming a module is not an edge.
    let multi =
        "use crate::{\n    auth,\n    plan::{self, Plan},\n    // respond\n    state,\n};\n";
    assert_eq!(referenced(multi), ["auth", "plan", "state"]);

    let mut g = Graph::new();
    g.insert("a".into(), BTreeSet::from(["b".to_string()]));
    g.insert("b".into(), BTreeSet::from(["c".to_string()]));
    g.insert("c".into(), BTreeSet::from(["a".to_string()]));
    g.insert("d".into(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
    // The gateway has modules, and the pipeline depends on the plan stage.
    let gw = crates()
        .into_iter()
        .find(|p| p.ends_with("meridian-gateway/src"))
        .unwrap();
    let g = graph(&gw);
    assert!(g["pipeline"].contains("plan"), "{g:?}");
    assert!(!g["plan"].contains("pipeline"), "{g:?}");
}

/// A cycle planted in a scratch crate, its back edge written as a use tree
/// over several lines, is found.
#[test]
fn a_planted_cycle_through_a_multi_line_use_is_found() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "use crate::{\n    a::A,\n    b as _,\n};\npub struct B;\n",
    )
    .unwrap();
    let found = cycles(&graph(&src));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, vec![vec!["a", "b"]]);
}
