//! meridian.toml: valid files load, wrong ones say file:line, key and what was expected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::path::Path;

use meridian_config::{RegionSetting, UpstreamMode, parse};

const GOOD: &str = r#"
region = "eu-west-3"
default_residency = "europe"

[residency.europe]
allow = ["eu"]
exclude = ["eu-west-2"]

[residency.paris]
allow = ["eu-west-3", "eu-central-1"]

[models.chat]
model = "claude-sonnet-4-5"

[models.fast]
model = "claude-haiku-4-5"
residency = "paris"

[models.pinned]
model = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123def456"

[[application_profiles]]
arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123def456"
model = "claude-sonnet-4-5"
regions = ["eu-west-1", "eu-central-1"]

[upstream]
mode = "simulated"
endpoints = { eu-west-3 = "http://127.0.0.1:9001" }
mantle_endpoints = { eu-west-3 = "https://bedrock-mantle.eu-west-3.api.aws" }

[[upstream.accounts]]
name = "prod"
role_arn = "arn:aws:iam::123456789012:role/meridian"
external_id = "x"
regions = ["eu-west-3"]
"#;

fn err(text: &str) -> String {
    parse(text, Some(Path::new("meridian.toml")))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_full_config_validates() {
    let l = parse(GOOD, Some(Path::new("meridian.toml"))).unwrap();
    let c = &l.config;
    assert_eq!(c.region, RegionSetting::Fixed("eu-west-3".into()));
    assert_eq!(c.upstream.mode, UpstreamMode::Simulated);
    assert_eq!(
        c.upstream.mantle_endpoints["eu-west-3"],
        "https://bedrock-mantle.eu-west-3.api.aws"
    );
    assert_eq!(c.models.len(), 3);
    // Per-model policies narrow the default: paris ∩ europe.
    let fast = c.model("fast").unwrap();
    assert!(fast.policy.allows("eu-west-3"));
    assert!(!fast.policy.allows("eu-west-1"));
    assert!(!c.model("chat").unwrap().policy.allows("eu-west-2"));
    let r = c.resolve(&l.catalog, "chat", "eu-west-3", None).unwrap();
    assert!(r.targets[0].model_id.starts_with("eu."));
    assert!(r.targets.iter().all(|t| !t.model_id.starts_with("global.")));
    let pinned = c.resolve(&l.catalog, "pinned", "eu-west-3", None).unwrap();
    assert_eq!(pinned.targets[0].endpoint_region, "eu-west-1");
}

#[test]
fn no_file_exposes_every_catalog_model_unrestricted() {
    let l = parse("", None).unwrap();
    assert_eq!(l.config.models.len(), l.catalog.models().len());
    assert!(l.config.default_policy.is_unrestricted());
    assert_eq!(l.config.region, RegionSetting::Auto);
}

#[test]
fn errors_name_file_line_key_and_expectation() {
    let e = err("region = \"eu-west-3\"\nregoin = \"x\"\n");
    assert!(e.starts_with("meridian.toml:2: regoin:"), "{e}");
    assert!(e.contains("unknown field"), "{e}");

    let e = err("region = \"eu-wst-3\"\n");
    assert!(
        e.starts_with("meridian.toml:1: region: unknown region 'eu-wst-3'; did you mean eu-west-3"),
        "{e}"
    );

    let e = err("region = 5\n");
    assert!(e.starts_with("meridian.toml:1: region:"), "{e}");

    let e = err("[models.chat]\nmodel = \"claude-sonet-4-5\"\n");
    assert!(
        e.starts_with("meridian.toml:2: models.chat.model: unknown model"),
        "{e}"
    );
    assert!(e.contains("claude-sonnet-4-5"), "{e}");

    let e = err("[residency.eu]\nallow = [\"europe\"]\n");
    assert!(e.starts_with("meridian.toml:2: residency.eu:"), "{e}");

    let e = err("[models.chat]\nmodel = \"claude-sonnet-4-5\"\nresidency = \"nowhere\"\n");
    assert!(
        e.starts_with(
            "meridian.toml:3: models.chat.residency: no residency policy named 'nowhere'"
        ),
        "{e}"
    );

    let e = err("[upstream]\nmode = \"cloud\"\n");
    assert!(
        e.contains(":2: upstream.mode: 'cloud' is not a mode; expected auto, aws or simulated"),
        "{e}"
    );

    let e = err("[upstream.endpoints]\neu-west-3 = \"127.0.0.1:9000\"\n");
    assert!(e.contains(":2: upstream.endpoints.eu-west-3:"), "{e}");

    let e = err("[upstream.mantle_endpoints]\neu-west-3 = \"bedrock-mantle\"\n");
    assert!(
        e.contains(":2: upstream.mantle_endpoints.eu-west-3:"),
        "{e}"
    );
    let e = err("[upstream.mantle_endpoints]\nmars-1 = \"https://m\"\n");
    assert!(e.contains("upstream.mantle_endpoints.mars-1"), "{e}");

    let e = err(
        "[models.p]\nmodel = \"arn:aws:bedrock:eu-west-1:1:application-inference-profile/x\"\n",
    );
    assert!(
        e.contains(":2: models.p.model: application inference profile not declared"),
        "{e}"
    );
}

#[test]
fn routing_and_log_settings_that_cannot_work_are_refused() {
    let e = err(
        "default_residency = [\"eu\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\nstrategy = \"weighted\"\nweights = { \"eu-west-1\" = 2, \"us-east-1\" = 1 }\n",
    );
    assert!(
        e.starts_with("meridian.toml:5: models.chat.weights: 'us-east-1' is outside this model's residency policy"),
        "{e}"
    );
    let ok = "default_residency = [\"eu\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\nstrategy = \"weighted\"\nweights = { \"eu-west-1\" = 2, \"eu-west-3\" = 1 }\n";
    assert!(parse(ok, None).is_ok());

    let e = err("[logging.s3]\nbucket = \"logs\"\nspool_max_bytes = 10\n");
    assert!(
        e.starts_with(
            "meridian.toml:3: logging.s3.spool_max_bytes: 10 bytes cannot hold one segment"
        ),
        "{e}"
    );
    let e = err("[logging.s3]\nbucket = \"logs\"\nsegment_bytes = 100\n");
    assert!(
        e.starts_with("meridian.toml:3: logging.s3.segment_bytes: must be at least 4096"),
        "{e}"
    );
    let ok = "[logging.s3]\nbucket = \"logs\"\nsegment_bytes = 6000\nspool_max_bytes = 6000\n";
    assert!(parse(ok, None).is_ok());
}

#[test]
fn otlp_protocols_are_the_sdks_spellings_and_protobuf_by_default() {
    let t = |text: &str| parse(text, None).unwrap().config.tracing;
    let on = "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\n";
    assert_eq!(
        t(on).otlp_protocol,
        meridian_config::OtlpProtocol::HttpProtobuf
    );
    for (name, p) in meridian_config::OtlpProtocol::ALL {
        let c = t(&format!("{on}otlp_protocol = \"{name}\"\n"));
        assert_eq!(c.otlp_protocol, p);
        assert_eq!(p.as_str(), name);
    }
    let e = err(&format!("{on}otlp_protocol = \"grpc+tls\"\n"));
    assert!(
        e.starts_with("meridian.toml:3: tracing.otlp_protocol: expected \"http/protobuf\", \"http/json\" or \"grpc\""),
        "{e}"
    );
}

#[test]
fn catalog_override_file_is_applied_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("extra.toml"),
        r#"
[[model]]
alias = "house-model"
id = "acme.house-v1:0"
name = "House"
provider = "acme"
input = ["text"]
output = ["text"]
streaming = true
context_window = 1000
max_output_tokens = 100
routes = []
on_demand = ["eu-west-3"]
price = { on_demand = [1.0, 2.0] }
"#,
    )
    .unwrap();
    let cfg = dir.path().join("meridian.toml");
    std::fs::write(
        &cfg,
        "[catalog]\nfile = \"extra.toml\"\n[models.h]\nmodel = \"house-model\"\n",
    )
    .unwrap();
    let l = meridian_config::load(Some(&cfg)).unwrap();
    let r = l
        .config
        .resolve(&l.catalog, "h", "eu-west-3", None)
        .unwrap();
    assert_eq!(r.targets[0].model_id, "acme.house-v1:0");

    std::fs::write(dir.path().join("extra.toml"), "[[model]]\nalias = 1\n").unwrap();
    let e = meridian_config::load(Some(&cfg)).unwrap_err().to_string();
    assert!(
        e.contains("catalog.file") && e.contains("extra.toml"),
        "{e}"
    );
}

#[test]
fn service_tiers_must_be_known_once_and_offered_by_the_model() {
    let cfg = |model: &str, tiers: &str| {
        format!("[models.m]\nmodel = \"{model}\"\nservice_tiers = {tiers}\n")
    };
    let ok = parse(&cfg("nova-lite", "[\"flex\", \"default\"]"), None).unwrap();
    let m = ok.config.model("m").unwrap();
    assert_eq!(
        m.service_tiers,
        [
            meridian_catalog::ServiceTier::Flex,
            meridian_catalog::ServiceTier::Default
        ]
    );
    let e = err(&cfg("nova-lite", "[\"cheap\"]"));
    assert!(
        e.starts_with("meridian.toml:3: models.m.service_tiers: 'cheap' is not a service tier"),
        "{e}"
    );
    let e = err(&cfg("nova-lite", "[\"flex\", \"flex\"]"));
    assert!(e.contains("'flex' is listed twice"), "{e}");
    let e = err(&cfg("claude-3-haiku", "[\"flex\", \"default\"]"));
    assert!(
        e.contains(
            "claude-3-haiku does not offer the flex tier on Bedrock (the catalog lists: default)"
        ),
        "{e}"
    );
}

#[test]
fn provisioned_throughput_comes_first_within_the_policy_with_its_capacity() {
    let cfg = |arn: &str, units: u32, extra: &str| {
        format!(
            "region = \"us-east-1\"\n{extra}\n[residency.us]\nallow = [\"us-east-1\", \"us-west-2\"]\n\
             [models.m]\nmodel = \"claude-3-haiku\"\nresidency = \"us\"\n\
             [[models.m.provisioned]]\narn = \"{arn}\"\nmodel_units = {units}\ntokens_per_minute_per_unit = 1000\n"
        )
    };
    let pt = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/abc";
    let ok = parse(&cfg(pt, 3, ""), None).unwrap();
    let res = ok
        .config
        .resolve(&ok.catalog, "m", "us-east-1", None)
        .unwrap();
    let first = &res.targets[0];
    assert_eq!(first.model_id, pt);
    assert_eq!(first.kind, meridian_catalog::TargetKind::Provisioned);
    assert_eq!(first.capacity_tpm, Some(3000));
    assert_eq!(
        first.base_model_id.as_deref(),
        Some("anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(first.price.map(|p| p.input_per_mtok), Some(0.0));
    assert!(res.targets.len() > 1, "on-demand targets follow");
    // Replicas share the capacity.
    let shared = parse(&cfg(pt, 3, "[state]\nreplicas = 3\n"), None).unwrap();
    let res = shared
        .config
        .resolve(&shared.catalog, "m", "us-east-1", None)
        .unwrap();
    assert_eq!(res.targets[0].capacity_tpm, Some(1000));
    // Outside the policy it is never a target.
    let eu = "arn:aws:bedrock:eu-west-1:111122223333:provisioned-model/abc";
    let far = parse(&cfg(eu, 1, ""), None).unwrap();
    let res = far
        .config
        .resolve(&far.catalog, "m", "us-east-1", None)
        .unwrap();
    assert!(res.targets.iter().all(|t| t.model_id != eu));
    assert!(res.rejected.iter().any(|r| r.target.model_id == eu));

    let e = err(&cfg(
        "arn:aws:bedrock:us-east-1:1:foundation-model/x",
        1,
        "",
    ));
    assert!(
        e.contains("models.m.provisioned[0].arn: expected an ARN like arn:aws:bedrock:REGION:ACCOUNT:provisioned-model/ID"),
        "{e}"
    );
    let e = err(&cfg(pt, 0, ""));
    assert!(
        e.contains("models.m.provisioned[0].model_units: expected at least 1"),
        "{e}"
    );
}

#[test]
fn a_provider_model_is_one_target_in_its_declared_region_under_the_policy() {
    let cfg = |region: &str, residency: &str| {
        format!(
            "region = \"eu-west-1\"\n[residency.eu]\nallow = [\"eu\"]\n\
             [[providers]]\nname = \"local\"\nbase_url = \"http://127.0.0.1:4000/v1\"\n\
             api_key_env = \"LOCAL_KEY\"\n{region}models = [\"llama3\"]\n\
             [models.l]\nmodel = \"llama3\"\nprovider = \"local\"\n{residency}"
        )
    };
    // Declared in the EU: a target under the EU policy, called in that region.
    let ok = parse(
        &cfg("region = \"eu-central-1\"\n", "residency = \"eu\"\n"),
        None,
    )
    .unwrap();
    assert_eq!(ok.config.providers[0].name, "local");
    assert_eq!(
        ok.config.providers[0].api_key_env.as_deref(),
        Some("LOCAL_KEY")
    );
    let res = ok
        .config
        .resolve(&ok.catalog, "l", "eu-west-1", None)
        .unwrap();
    assert_eq!(res.targets.len(), 1);
    let t = &res.targets[0];
    assert_eq!(t.kind, meridian_catalog::TargetKind::Provider);
    assert_eq!(t.endpoint_region, "eu-central-1");
    assert_eq!(t.model_id, "llama3");

    // Declared in the US: never a target under the EU policy.
    let us = parse(
        &cfg("region = \"us-east-1\"\n", "residency = \"eu\"\n"),
        None,
    )
    .unwrap();
    let e = us
        .config
        .resolve(&us.catalog, "l", "eu-west-1", None)
        .unwrap_err();
    assert!(e.to_string().contains("us-east-1"), "{e}");
    // ... nor when the request narrows an unrestricted model to the EU.
    let open = parse(&cfg("region = \"us-east-1\"\n", ""), None).unwrap();
    assert!(
        open.config
            .resolve(&open.catalog, "l", "eu-west-1", None)
            .is_ok()
    );
    let eu = open.config.policies["eu"].clone();
    assert!(
        open.config
            .resolve(&open.catalog, "l", "eu-west-1", Some(&eu))
            .is_err()
    );

    // Undeclared: only an unrestricted policy lets it be called.
    let undeclared = parse(&cfg("", ""), None).unwrap();
    let res = undeclared
        .config
        .resolve(&undeclared.catalog, "l", "eu-west-1", None)
        .unwrap();
    assert_eq!(res.targets[0].endpoint_region, "undeclared");
    let undeclared_eu = parse(&cfg("", "residency = \"eu\"\n"), None).unwrap();
    let e = undeclared_eu
        .config
        .resolve(&undeclared_eu.catalog, "l", "eu-west-1", None)
        .unwrap_err();
    assert!(e.to_string().contains("undeclared"), "{e}");

    // Wrong ones say what was expected.
    let e = err(&cfg("region = \"mars-1\"\n", ""));
    assert!(e.contains("providers[0].region"), "{e}");
    let e = err(&cfg("", "").replace("provider = \"local\"", "provider = \"nope\""));
    assert!(
        e.contains("models.l.provider: 'nope' is not a [[providers]] entry (declared: local)"),
        "{e}"
    );
    let e = err(&cfg("", "").replace("model = \"llama3\"\nprovider", "model = \"qwen\"\nprovider"));
    assert!(
        e.contains("provider 'local' does not list 'qwen' (its models: llama3)"),
        "{e}"
    );
    let e = err(&cfg("", "").replace("http://127.0.0.1:4000/v1", "127.0.0.1:4000"));
    assert!(e.contains("providers[0].base_url"), "{e}");
}

#[test]
fn guards_guardrails_and_caches_are_checked_where_they_are_written() {
    let ok = parse(
        r#"
[guards.pii]
email = "anonymize"
card = "block"
custom = [{ name = "patient-id", regex = "PID-[0-9]{8}", action = "mask" }]
words = [{ name = "codename", words = ["bluebird"], action = "log" }]

[models.chat]
model = "claude-sonnet-4-5"
guard = "pii"
guardrail = { eu-west-1 = "gr-abc:3", eu-central-1 = "gr-def:DRAFT" }
cache = { ttl = "10m" }

[tenants.t]
credentials = [{ access_key_id = "AKIDGUARDTENANT", secret_access_key = "guard-tenant-secret" }]
guard = "pii"
"#,
        None,
    )
    .unwrap();
    let m = ok.config.model("chat").unwrap();
    assert_eq!(m.guard.as_deref(), Some("pii"));
    assert_eq!(m.guardrails["eu-central-1"].version, "DRAFT");
    assert_eq!(m.cache.unwrap().ttl, std::time::Duration::from_secs(600));
    let g = &ok.config.guards["pii"];
    assert_eq!(g.rules.len(), 4);
    assert_eq!(g.rules[2].detector.label(), "PATIENT_ID");
    assert_eq!(ok.config.tenants[0].guard.as_deref(), Some("pii"));

    for (text, expected) in [
        (
            "[guards.g]\nemail = \"redact\"\n",
            "meridian.toml:2: guards.g.email: 'redact' is not an action",
        ),
        (
            "[guards.g]\ncustom = [{ name = \"x\", regex = \"(\", action = \"mask\" }]\n",
            "meridian.toml:2: guards.g.custom[0].regex: regex parse error",
        ),
        (
            "[guards.g]\n",
            "meridian.toml:1: guards.g: a guard names at least one detector",
        ),
        (
            "[models.m]\nmodel = \"claude-sonnet-4-5\"\nguard = \"nope\"\n",
            "meridian.toml:3: models.m.guard: 'nope' is not a [guards] entry",
        ),
        (
            "[models.m]\nmodel = \"claude-sonnet-4-5\"\nguardrail = { eu-west-1 = \"gr-abc\" }\n",
            "meridian.toml:3: models.m.guardrail.eu-west-1: expected \"GUARDRAIL_ID:VERSION\"",
        ),
        (
            "[models.m]\nmodel = \"claude-sonnet-4-5\"\nguardrail = { mars-1 = \"gr:1\" }\n",
            "meridian.toml:3: models.m.guardrail: 'mars-1' is not a known region",
        ),
        (
            "[models.m]\nmodel = \"claude-sonnet-4-5\"\ncache = { ttl = \"10\" }\n",
            "meridian.toml:3: models.m.cache.ttl: expected a duration",
        ),
    ] {
        let e = err(text);
        assert!(e.starts_with(expected), "{e}");
    }
}

#[test]
fn the_redis_url_may_come_from_the_environment_and_is_never_echoed() {
    // Unset where the config is read (a laptop running `config check` or
    // `iam-policy`): the config is valid, and `serve` refuses it with this.
    let unset = parse(
        "[state]\nbackend = \"redis\"\nurl_env = \"MERIDIAN_TEST_SURELY_UNSET_VARIABLE\"\n",
        None,
    )
    .unwrap();
    assert_eq!(
        unset.config.state.missing_url().unwrap(),
        "state.url_env: the environment variable MERIDIAN_TEST_SURELY_UNSET_VARIABLE is not set (it should hold redis://HOST:PORT)"
    );
    // Cargo sets CARGO_MANIFEST_DIR for every test process: set, but no Redis URL.
    let e = err("[state]\nbackend = \"redis\"\nurl_env = \"CARGO_MANIFEST_DIR\"\n");
    assert!(
        e.starts_with("meridian.toml:3: state.url: expected redis://"),
        "{e}"
    );
    assert!(
        !e.contains(env!("CARGO_MANIFEST_DIR")),
        "the value is not echoed: {e}"
    );
    let e = err("[state]\nbackend = \"redis\"\nurl = \"redis://a:1\"\nurl_env = \"REDIS_URL\"\n");
    assert!(e.contains("set url or url_env, not both"), "{e}");
    let e = err("[state]\nurl_env = \"REDIS_URL\"\n");
    assert!(e.contains("a url is for backend = \"redis\""), "{e}");
}

#[test]
fn config_text_may_come_from_the_environment_but_a_named_file_wins() {
    let from_env =
        meridian_config::load_with(None, Some("region = \"eu-west-3\"\n".into())).unwrap();
    assert_eq!(
        from_env.config.region,
        meridian_config::RegionSetting::Fixed("eu-west-3".into())
    );
    assert_eq!(from_env.config.file, None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(&file, "region = \"ca-central-1\"\n").unwrap();
    let from_file =
        meridian_config::load_with(Some(&file), Some("region = \"eu-west-3\"\n".into())).unwrap();
    assert_eq!(
        from_file.config.region,
        meridian_config::RegionSetting::Fixed("ca-central-1".into())
    );
    let bad = meridian_config::load_with(None, Some("region = 7\n".into())).unwrap_err();
    assert!(bad.to_string().contains("region"), "{bad}");
}
