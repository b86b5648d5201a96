//! `unsafe` is denied in every crate of the workspace (`Cargo.toml`'s
//! lints); the one place allowed to use it is the allocator setting in
//! `crates/meridian/src/alloc.rs`. This test fails when the lint is
//! weakened or another file allows it. Run it alone with
//! `cargo test -p meridian --test unsafe_code`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Files (relative to the workspace) that mention the `unsafe_code` lint.
fn allowing(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["crates", "fuzz", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let this = Path::new(file!()).file_name().unwrap();
    let mut out: Vec<String> = files
        .iter()
        .filter(|f| f.file_name() != Some(this))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("unsafe_code"))
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn unsafe_is_denied_and_allowed_in_one_file_only() {
    let root = workspace();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let lints = &manifest[manifest.find("[workspace.lints.rust]").unwrap()..];
    let lints = &lints[..lints[1..].find("\n[").map_or(lints.len(), |i| i + 1)];
    assert!(
        lints
            .lines()
            .any(|l| l.trim() == r#"unsafe_code = "deny""#
                || l.trim() == r#"unsafe_code = "forbid""#),
        "the workspace no longer denies unsafe code:\n{lints}"
    );
    assert_eq!(allowing(&root), ["crates/meridian/src/alloc.rs"]);
}

#[test]
fn a_second_file_that_allows_unsafe_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("crates/x/src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("lib.rs"), "#![allow(unsafe_code)]\n").unwrap();
    std::fs::write(src.join("ok.rs"), "fn f() {}\n").unwrap();
    assert_eq!(allowing(dir.path()), ["crates/x/src/lib.rs"]);
}
