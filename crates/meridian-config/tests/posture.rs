//! A reload never lowers the inbound security posture on its own: the
//! changes that would are named, the ones that tighten or keep it are not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use meridian_config::{parse, posture::weakenings};

const H1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn base() -> String {
    format!(
        r#"
region = "eu-west-1"
default_residency = "eu"
strict_residency = true

[residency.eu]
allow = ["eu"]

[models.chat]
model = "claude-sonnet-4-5"
guard = "pii"

[guards.pii]
email = "mask"

[tenants.alpha]
api_keys = ["{H1}"]
residency = "eu"

[tenants.beta]
api_keys = ["{H2}"]
guard = "pii"

[admin]
key_hash = "{H1}"
"#
    )
}

fn found(old: &str, new: &str) -> Vec<String> {
    let old = parse(old, None).expect("old config");
    let new = parse(new, None).expect("new config");
    weakenings(&old.config, &new.config, &old.catalog)
}

#[test]
fn an_empty_file_is_weaker_on_every_count() {
    let w = found(&base(), "");
    let all = w.join("\n");
    for expected in [
        "every [tenants] entry is gone",
        "[admin] key_hash is gone",
        "strict_residency was turned off",
        "default_policy would newly allow",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn the_same_file_or_a_tighter_one_is_not_weaker() {
    assert_eq!(found(&base(), &base()), Vec::<String>::new());
    // One tenant revoked, the EU narrowed to two regions, a new model
    // inside the default: all tighten or keep.
    let tighter = base()
        .replace(
            &format!("[tenants.beta]\napi_keys = [\"{H2}\"]\nguard = \"pii\"\n"),
            "",
        )
        .replace(
            "allow = [\"eu\"]",
            "allow = [\"eu-west-1\", \"eu-central-1\"]",
        )
        + "\n[models.fast]\nmodel = \"claude-haiku-4-5\"\n";
    assert!(tighter.contains("[models.fast]") && !tighter.contains("tenants.beta"));
    assert_eq!(found(&base(), &tighter), Vec::<String>::new());
}

#[test]
fn each_single_weakening_is_named() {
    let cases = [
        (
            "[admin]\nkey_hash",
            "[ignored]\nkey_hash",
            "[admin] key_hash is gone",
        ),
        (
            "strict_residency = true",
            "",
            "strict_residency was turned off",
        ),
        (
            "guard = \"pii\"\n\n[guards",
            "\n[guards",
            "models.chat lost its guard",
        ),
        (
            "residency = \"eu\"\n\n[tenants.beta]",
            "\n[tenants.beta]",
            "tenants.alpha.residency would newly allow",
        ),
        (
            "allow = [\"eu\"]",
            "allow = [\"eu\", \"us-east-1\"]",
            "default_policy would newly allow us-east-1",
        ),
    ];
    for (from, to, expected) in cases {
        let text = base();
        assert!(
            text.contains(from),
            "case {expected:?}: {from:?} not in the base"
        );
        let mut new = text.replacen(from, to, 1);
        if from.starts_with("[admin]") {
            // An unknown section is refused; drop the key instead.
            new = text.replace(&format!("[admin]\nkey_hash = \"{H1}\"\n"), "");
        }
        let w = found(&text, &new).join("\n");
        assert!(w.contains(expected), "case {expected:?}, got:\n{w}");
    }
}
