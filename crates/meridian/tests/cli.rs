//! The `meridian` binary as an operator runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use assert_cmd::Command;
use serde_json::Value;

/// The binary with an empty environment that never reaches a metadata service.
fn meridian() -> Command {
    let mut cmd = Command::cargo_bin("meridian").unwrap();
    cmd.env_clear()
        .env("HOME", "/nonexistent-home")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(std::env::temp_dir());
    cmd
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn first_model_id(v: &Value) -> String {
    v["targets"][0]["model_id"].as_str().unwrap().to_string()
}

#[test]
fn resolve_done_when() {
    let v = json(meridian().args(["resolve", "claude-sonnet-4-5", "--region", "eu-west-3"]));
    assert!(first_model_id(&v).starts_with("eu."), "{v}");

    let v = json(meridian().args([
        "resolve",
        "claude-sonnet-4-5",
        "--region",
        "eu-west-3",
        "--allow",
        "eu",
    ]));
    for t in v["targets"].as_array().unwrap() {
        assert!(
            !t["model_id"].as_str().unwrap().starts_with("global."),
            "{t}"
        );
    }

    let v = json(meridian().args(["resolve", "claude-sonnet-4-5", "--region", "us-east-1"]));
    assert!(first_model_id(&v).starts_with("us."), "{v}");

    let v = json(meridian().args(["resolve", "claude-sonnet-4-5", "--region", "ap-northeast-1"]));
    assert!(first_model_id(&v).starts_with("jp."), "{v}");

    let v = json(meridian().args(["resolve", "claude-sonnet-4-5", "--region", "ca-central-1"]));
    assert!(first_model_id(&v).starts_with("global."), "{v}");

    let out = meridian()
        .args([
            "resolve",
            "claude-sonnet-4-5",
            "--region",
            "ca-central-1",
            "--allow",
            "ca-central-1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no target for claude-sonnet-4-5 from ca-central-1"),
        "{err}"
    );
    assert!(
        err.contains("ca-central-1") && err.contains("global."),
        "{err}"
    );
}

#[test]
fn resolve_table_and_bad_input() {
    let out = meridian()
        .args(["resolve", "claude-haiku-4-5", "--region", "eu-west-3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().nth(2).unwrap();
    assert!(
        header.starts_with('#') && header.contains("CALL IN") && header.contains("PROCESSED IN"),
        "{text}"
    );
    assert!(text.contains("eu.anthropic.claude-haiku-4-5-20251001-v1:0"));

    let out = meridian()
        .args(["resolve", "claude-sonet-4-5", "--region", "us-east-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean claude-sonnet-4-5"));

    let out = meridian()
        .args(["resolve", "claude-sonnet-4-5", "--region", "eu-wst-3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown region 'eu-wst-3'"));

    let out = meridian()
        .args([
            "resolve",
            "claude-sonnet-4-5",
            "--region",
            "eu-west-3",
            "--allow",
            "europe",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown geography or region 'europe'"));
}

#[test]
fn regions_filters() {
    let v = json(meridian().args(["regions", "--geo", "eu", "--bedrock"]));
    let codes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"eu-west-3") && codes.contains(&"eu-central-2"));
    assert!(codes.iter().all(|c| c.starts_with("eu-")));
    let all = json(meridian().args(["regions"]));
    let all: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    for required in [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "ca-central-1",
        "sa-east-1",
        "eu-central-1",
        "eu-central-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "ap-south-1",
        "ap-south-2",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-4",
        "us-gov-east-1",
        "us-gov-west-1",
    ] {
        assert!(all.contains(&required), "{required}");
    }
    meridian()
        .args(["regions", "--geo", "atlantis"])
        .assert()
        .failure();
}

#[test]
fn detect_reports_the_step() {
    let v = json(meridian().args(["detect"]).env("AWS_REGION", "eu-north-1"));
    assert_eq!(v["region"], "eu-north-1");
    assert_eq!(v["step"], "aws-region");
    let v = json(meridian().args(["detect"]));
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["step"], "fallback");
}

#[test]
fn iam_policy_is_valid_json_covering_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("meridian.toml");
    std::fs::write(&cfg, "region = \"eu-west-3\"\ndefault_residency = [\"eu\"]\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n").unwrap();
    let out = meridian()
        .args(["iam-policy", "--account", "123456789012", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v.to_string();
    assert!(text.contains("arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0"));
    for region in [
        "eu-central-1",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-3",
    ] {
        assert!(text.contains(&format!("arn:aws:bedrock:{region}::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0")), "{region}");
    }
    // EU-only: nothing global, nothing outside the EU.
    assert!(!text.contains("global."));
    assert!(!text.contains(":us-east-1:"));
}

#[test]
fn doctor_and_config_check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "region = \"eu-west-3\"\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\nresidency = [\"eu\"]\n").unwrap();
    meridian()
        .args(["config", "check"])
        .arg(&good)
        .assert()
        .success();
    meridian()
        .args(["doctor", "--config"])
        .arg(&good)
        .assert()
        .success();

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "region = \"eu-west-3\"\n[models.chat]\nmodle = \"claude-sonnet-4-5\"\n",
    )
    .unwrap();
    let out = meridian()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3: modle: unknown field `modle`"),
        "{err}"
    );
    meridian()
        .args(["doctor", "--config"])
        .arg(&bad)
        .assert()
        .failure();

    // A policy that leaves a model no target is an error for doctor, with the fix.
    let pinned = dir.path().join("pinned.toml");
    std::fs::write(&pinned, "region = \"ca-central-1\"\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\nresidency = [\"ca-central-1\"]\n").unwrap();
    let out = meridian()
        .args(["doctor", "--config"])
        .arg(&pinned)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ERROR") && text.contains("widen the model's residency policy"),
        "{text}"
    );

    // upstream.mode = aws without credentials is an error.
    let aws = dir.path().join("aws.toml");
    std::fs::write(&aws, "[upstream]\nmode = \"aws\"\n").unwrap();
    let v = meridian()
        .args(["doctor", "--json", "--config"])
        .arg(&aws)
        .output()
        .unwrap();
    assert!(!v.status.success());
    let v: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["ok"], false);
}

/// A config file in a fresh directory.
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meridian.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn plan_migration_reports_moves_refusals_and_unservable_models() {
    // us-east-1 → eu-west-3: every model still served; the report says how.
    let (_d, cfg) = config_file(
        "region = \"us-east-1\"\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n[models.lite]\nmodel = \"nova-lite\"\n",
    );
    let out = meridian()
        .args(["plan-migration", "--to", "eu-west-3", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("us-east-1"), Some("eu-west-3"))
    );
    let chat = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "chat")
        .unwrap();
    assert!(
        chat["before"]["model_id"]
            .as_str()
            .unwrap()
            .starts_with("us."),
        "{chat}"
    );
    assert!(
        chat["after"]["model_id"]
            .as_str()
            .unwrap()
            .starts_with("eu."),
        "{chat}"
    );
    assert_eq!(chat["after"]["call_in"], "eu-west-3");
    assert!(
        chat["destinations_gained"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("eu-"))
    );
    assert!(
        chat["destinations_lost"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("us-"))
    );
    assert!(!v["iam_arns_added"].as_array().unwrap().is_empty());
    assert!(
        v["notes"]
            .to_string()
            .contains("region = \\\"us-east-1\\\""),
        "{}",
        v["notes"]
    );
    let table = meridian()
        .args(["plan-migration", "--to", "eu-west-3", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("verdict: every model can be served"),
        "{text}"
    );

    // eu-west-3 → ca-central-1 with an EU policy, strict: refused, naming it.
    let (_d2, strict) = config_file(
        "region = \"eu-west-3\"\nstrict_residency = true\n[residency.eu-only]\nallow = [\"eu\"]\n\
         [models.chat]\nmodel = \"claude-sonnet-4-5\"\nresidency = \"eu-only\"\n",
    );
    let out = meridian()
        .args(["plan-migration", "--to", "ca-central-1", "--config"])
        .arg(&strict)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("eu-only") && text.contains("refused (strict_residency"),
        "{text}"
    );
    // The same config, fixed in a region outside its policy, is refused at load.
    let (_d3, bad) = config_file(
        "region = \"ca-central-1\"\nstrict_residency = true\n[residency.eu-only]\nallow = [\"eu\"]\n\
         [models.chat]\nmodel = \"claude-sonnet-4-5\"\nresidency = \"eu-only\"\n",
    );
    let out = meridian()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("strict_residency") && err.contains("'eu-only'"),
        "{err}"
    );

    // us-east-1 → us-gov-west-1: models GovCloud does not serve are unservable.
    let out = meridian()
        .args([
            "plan-migration",
            "--to",
            "us-gov-west-1",
            "--json",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["partition_to"], "aws-us-gov");
    assert!(
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| !m["unservable"].is_null()),
        "{v}"
    );
    assert!(
        v["notes"].to_string().contains("partition changes"),
        "{}",
        v["notes"]
    );
}
