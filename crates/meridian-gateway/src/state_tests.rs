//! A reload builds a new snapshot over the same runtime, and says which
//! changed sections need a restart by comparing them as values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test

use std::sync::Arc;

use meridian_catalog::detect::Step;

use super::*;

const BASE: &str = "region = \"us-east-1\"\n[models.chat]\nmodel = \"nova-lite\"\n";

fn state(toml: &str) -> AppState {
    let loaded = meridian_config::parse(toml, None).unwrap();
    let info = UpstreamInfo {
        mode: "simulated",
        fallback: false,
        detail: "test".into(),
    };
    AppState::with_accounts(
        loaded.config,
        loaded.catalog,
        "us-east-1".into(),
        Step::Config,
        Vec::new(),
        info,
    )
}

fn reload(old: &AppState, toml: &str) -> (AppState, Vec<&'static str>) {
    let loaded = meridian_config::parse(toml, None).unwrap();
    old.reloaded(loaded.config, loaded.catalog)
}

#[test]
fn a_reload_keeps_the_runtime_and_takes_the_new_config() {
    let old = state(BASE);
    let (next, restart) = reload(
        &old,
        &format!("{BASE}[models.small]\nmodel = \"claude-3-haiku\"\n"),
    );
    assert!(restart.is_empty(), "{restart:?}");
    assert!(Arc::ptr_eq(&old.runtime, &next.runtime));
    assert!(Arc::ptr_eq(&old.router, &next.router));
    assert!(next.config.model("small").is_some());
    assert!(old.config.model("small").is_none());
}

#[test]
fn each_restart_only_section_is_named_when_it_changes() {
    let old = state(BASE);
    let cases = [
        ("[server]\nmax_concurrent_requests = 7\n", "server"),
        (
            "[logging]\nsink = \"file\"\nfile = \"x.ndjson\"\n",
            "logging",
        ),
        ("[routing]\nretry_budget = 0.5\n", "routing.retry_budget"),
        ("[upstream]\nmode = \"simulated\"\n", "upstream"),
    ];
    for (section, name) in cases {
        let (next, restart) = reload(&old, &format!("{BASE}{section}"));
        assert_eq!(restart, [name], "{section}");
        // What did not take effect is still what /status shows.
        assert_eq!(next.config.server, old.config.server);
    }
}
