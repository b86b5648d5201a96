//! The README's list of pipeline stages is the code's: the names, in order,
//! of the stage functions `pipeline::stages` calls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// The stage functions `stages` calls, in order: every `NAME::<F>(`.
fn stages_in_code() -> Vec<String> {
    let src = std::fs::read_to_string(root().join("crates/meridian-gateway/src/pipeline/mod.rs"))
        .unwrap();
    let start = src.find("async fn stages<").expect("no stages function");
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").unwrap()];
    let mut out = Vec::new();
    for (i, _) in body.match_indices("::<F>(") {
        let before = &body[..i];
        let name: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        out.push(name);
    }
    out
}

/// The backticked names in the README's "One pipeline" paragraph, in order.
fn stages_in_readme() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("**One pipeline.**")
        .expect("no One pipeline paragraph");
    let para = &readme[start..];
    let para = &para[..para.find("\n\n").unwrap()];
    let list = &para[para.find("in this order:").expect("no stage list")..];
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .take_while(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn the_readme_lists_the_stages_the_code_runs() {
    let code = stages_in_code();
    assert!(code.len() >= 10, "{code:?}");
    assert_eq!(stages_in_readme(), code);
}
