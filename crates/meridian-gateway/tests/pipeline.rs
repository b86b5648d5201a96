//! Every front door through every pipeline stage that applies to it, as a
//! table: front doors are rows, stages are checks. A front door that skips
//! a stage fails its row.
//!
//! Stages checked: identity enforced (no key → refused; a key → served),
//! request IDs returned (served and refused), an early rejection counted in
//! `/metrics` and written to the invocation log, the residency header
//! narrowing (the fleet's own record shows EU processing), and the deadline
//! header shortening the deadline, guard input (the model sees a placeholder
//! for an e-mail address; the record says what fired) and the response
//! cache (a repeat is answered without the fleet). Control-plane reads have no plan or
//! execute stage and get no invocation record (Bedrock logs invocations only).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod common;

use std::path::Path;

use meridian_router::health::Health;
use meridian_sim::{FaultSet, Fleet};

const KEY: &str = "mk-pipeline-table-0001";

const CONFIG: &str = r#"
region = "us-east-1"

[guards.pii]
email = "anonymize"

[models.chat]
model = "claude-sonnet-4-5"
guard = "pii"
cache = { ttl = "1m" }

[models.nova-pro]
model = "nova-pro"
guard = "pii"

[models.titan-embed-text-v2]
model = "titan-embed-text-v2"
guard = "pii"

[auth]
api_keys = ["mk-pipeline-table-0001"]
"#;

const REGIONS: [&str; 8] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
];

const CONVERSE: &str = r#"{"messages":[{"role":"user","content":[{"text":"table ann@example.com"}]}],"inferenceConfig":{"maxTokens":8}}"#;
const ANTHROPIC: &str = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":[{"role":"user","content":"table ann@example.com"}]}"#;
const CHAT: &str = r#"{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"table ann@example.com"}]}"#;
const MESSAGES: &str = r#"{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"table ann@example.com"}]}"#;
const MESSAGES_STREAM: &str = r#"{"model":"chat","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"table ann@example.com"}]}"#;
const COUNT: &str =
    r#"{"model":"chat","messages":[{"role":"user","content":"table ann@example.com"}]}"#;
const EMBED: &str = r#"{"model":"titan-embed-text-v2","input":["table ann@example.com","stages"]}"#;
const MESSAGES_TRANSLATED: &str = r#"{"model":"nova-pro","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"table ann@example.com"}]}"#;
const RESPONSES: &str = r#"{"model":"chat","max_output_tokens":8,"input":"table ann@example.com"}"#;
const RESPONSES_STREAM: &str = r#"{"model":"chat","max_output_tokens":8,"stream":true,"input":[{"role":"user","content":[{"type":"input_text","text":"table ann@example.com"}]}]}"#;
const CHAT_STREAM: &str = r#"{"model":"chat","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"table ann@example.com"}]}"#;

/// One front door, and what it is expected to say.
struct Door {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: &'static str,
    /// The `operation` label of an early rejection.
    operation: &'static str,
    /// The `outcome` label of a refused identity.
    refused_as: &'static str,
    /// Model invocations: plan and execute apply, records are written.
    invocation: bool,
}

const DOORS: [Door; 17] = [
    Door {
        name: "bedrock converse",
        method: "POST",
        path: "/model/chat/converse",
        body: CONVERSE,
        operation: "Converse",
        refused_as: "MissingAuthenticationTokenException",
        invocation: true,
    },
    Door {
        name: "bedrock converse-stream",
        method: "POST",
        path: "/model/chat/converse-stream",
        body: CONVERSE,
        operation: "ConverseStream",
        refused_as: "MissingAuthenticationTokenException",
        invocation: true,
    },
    Door {
        name: "bedrock invoke",
        method: "POST",
        path: "/model/chat/invoke",
        body: ANTHROPIC,
        operation: "InvokeModel",
        refused_as: "MissingAuthenticationTokenException",
        invocation: true,
    },
    Door {
        name: "openai chat",
        method: "POST",
        path: "/v1/chat/completions",
        body: CHAT,
        operation: "Converse",
        refused_as: "invalid_api_key",
        invocation: true,
    },
    Door {
        name: "openai chat stream",
        method: "POST",
        path: "/v1/chat/completions",
        body: CHAT_STREAM,
        operation: "Converse",
        refused_as: "invalid_api_key",
        invocation: true,
    },
    Door {
        name: "openai responses",
        method: "POST",
        path: "/v1/responses",
        body: RESPONSES,
        operation: "Converse",
        refused_as: "invalid_api_key",
        invocation: true,
    },
    Door {
        name: "openai responses stream",
        method: "POST",
        path: "/v1/responses",
        body: RESPONSES_STREAM,
        operation: "Converse",
        refused_as: "invalid_api_key",
        invocation: true,
    },
    Door {
        name: "anthropic messages",
        method: "POST",
        path: "/v1/messages",
        body: MESSAGES,
        operation: "InvokeModel",
        refused_as: "authentication_error",
        invocation: true,
    },
    Door {
        name: "anthropic messages stream",
        method: "POST",
        path: "/v1/messages",
        body: MESSAGES_STREAM,
        operation: "InvokeModel",
        refused_as: "authentication_error",
        invocation: true,
    },
    Door {
        name: "anthropic messages stream, translated to Converse",
        method: "POST",
        path: "/v1/messages",
        body: MESSAGES_TRANSLATED,
        operation: "InvokeModel",
        refused_as: "authentication_error",
        invocation: true,
    },
    Door {
        name: "openai embeddings",
        method: "POST",
        path: "/v1/embeddings",
        body: EMBED,
        operation: "InvokeModel",
        refused_as: "invalid_api_key",
        invocation: true,
    },
    Door {
        name: "anthropic count_tokens",
        method: "POST",
        path: "/v1/messages/count_tokens",
        body: COUNT,
        operation: "CountTokens",
        refused_as: "authentication_error",
        invocation: true,
    },
    Door {
        name: "control plane",
        method: "GET",
        path: "/foundation-models",
        body: "",
        operation: "ListFoundationModels",
        refused_as: "MissingAuthenticationTokenException",
        invocation: false,
    },
    Door {
        name: "openai models",
        method: "GET",
        path: "/v1/models",
        body: "",
        operation: "ListModels",
        refused_as: "invalid_api_key",
        invocation: false,
    },
    Door {
        name: "openai batches",
        method: "GET",
        path: "/v1/batches",
        body: "",
        operation: "GetBatch",
        refused_as: "invalid_api_key",
        invocation: false,
    },
    Door {
        name: "anthropic message batches",
        method: "GET",
        path: "/v1/messages/batches",
        body: "",
        operation: "GetMessageBatch",
        refused_as: "authentication_error",
        invocation: false,
    },
    Door {
        name: "bedrock batch jobs",
        method: "GET",
        path: "/model-invocation-jobs",
        body: "",
        operation: "ListModelInvocationJobs",
        refused_as: "MissingAuthenticationTokenException",
        invocation: false,
    },
];

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(base: &str, door: &Door, headers: &[(&str, &str)]) -> Answer {
    let url = format!("{base}{}", door.path);
    let r = common::send(door.method, &url, door.body, headers).await;
    Answer {
        status: r.status,
        body: String::from_utf8_lossy(&r.body).into_owned(),
        headers: r.headers,
    }
}

/// `meridian_requests_total` summed over series with this operation and outcome.
async fn requests_total(base: &str, operation: &str, outcome: &str) -> f64 {
    let r = common::send("GET", &format!("{base}/metrics"), "", &[]).await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let op = format!("operation=\"{operation}\"");
    let out = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|l| {
            l.starts_with("meridian_requests_total{") && l.contains(&op) && l.contains(&out)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for the invocation record of `request_id` (the writer is a thread).
async fn record(log: &Path, request_id: &str) -> Option<serde_json::Value> {
    common::record(log, request_id).await
}

async fn start(fleet: &Fleet, log: &Path) -> String {
    common::gateway_logging(fleet, CONFIG, log).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_front_door_passes_every_stage() {
    let fleet = common::fleet(&REGIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("invocations.ndjson");
    let gw = start(&fleet, &log).await;
    let bearer = format!("Bearer {KEY}");
    let authed = [("authorization", bearer.as_str())];

    for door in &DOORS {
        let name = door.name;

        // identify: without a key, refused; with it, served. Request IDs both times.
        let before = requests_total(&gw, door.operation, door.refused_as).await;
        let refused = send(&gw, door, &[]).await;
        assert!(
            matches!(refused.status, 401 | 403),
            "{name}: no key must be refused, got {} {}",
            refused.status,
            refused.body
        );
        let refused_id = refused.header("x-amzn-requestid").to_string();
        assert!(
            !refused_id.is_empty(),
            "{name}: refusal without a request ID"
        );
        // account: the early rejection is counted...
        let after = requests_total(&gw, door.operation, door.refused_as).await;
        assert_eq!(
            after - before,
            1.0,
            "{name}: refusal not counted in /metrics"
        );
        // ...and logged (model invocations only).
        let rec = record(&log, &refused_id).await;
        if door.invocation {
            let rec = rec.unwrap_or_else(|| panic!("{name}: refusal not in the invocation log"));
            assert_eq!(rec["errorCode"], door.refused_as, "{name}");
            assert_eq!(rec["meridian"]["status"], refused.status, "{name}");
        } else {
            assert!(
                rec.is_none(),
                "{name}: control-plane reads are not invocations"
            );
        }

        let ok = send(&gw, door, &authed).await;
        assert_eq!(ok.status, 200, "{name}: {}", ok.body);
        let ok_id = ok.header("x-amzn-requestid").to_string();
        assert!(!ok_id.is_empty(), "{name}: answer without a request ID");
        if !door.invocation {
            continue;
        }
        assert!(
            ok.header("x-meridian-region").starts_with("us-"),
            "{name}: no policy, nearest first: {}",
            ok.header("x-meridian-region")
        );
        let rec = record(&log, &ok_id)
            .await
            .unwrap_or_else(|| panic!("{name}: answer not in the invocation log"));
        let api = if door.path.starts_with("/v1/messages") {
            "anthropic"
        } else if door.path.starts_with("/v1") {
            "openai"
        } else {
            "bedrock"
        };
        assert_eq!(rec["meridian"]["api"], api, "{name}");

        // guard input: the model saw a placeholder, never the address.
        let fired = rec["meridian"]["guard"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            fired.iter().any(|g| g["direction"] == "input"
                && g["type"] == "EMAIL"
                && g["action"] == "anonymize"),
            "{name}: guard input did not run: {fired:?}"
        );
        let upstream = fleet.records();
        let seen_prompt = upstream
            .iter()
            .rev()
            .find_map(|r| r.prompt.clone())
            .unwrap_or_default();
        assert!(
            !upstream.iter().any(|r| r
                .prompt
                .as_deref()
                .is_some_and(|p| p.contains("ann@example.com"))),
            "{name}: the model saw the address: {seen_prompt}"
        );

        // cache: a repeat is answered without the fleet (a model with
        // `cache`; embeddings make one call per input and are not cached).
        if door.body.contains("\"chat\"") || door.path.starts_with("/model/chat") {
            let calls = fleet.records().len();
            let again = send(&gw, door, &authed).await;
            assert_eq!(again.status, 200, "{name}: {}", again.body);
            assert_eq!(
                again.header("x-meridian-cache"),
                "hit",
                "{name}: no cache hit"
            );
            assert_eq!(
                fleet.records().len(),
                calls,
                "{name}: the repeat reached the fleet"
            );
        }

        // plan: the residency header narrows; the fleet records where it processed.
        let seen = fleet.records().len();
        // (no-store: another front door may have cached the same upstream
        // request under the same policy, and a hit would call nothing)
        let eu = send(
            &gw,
            door,
            &[
                authed[0],
                ("x-meridian-residency", "eu"),
                ("x-meridian-cache", "no-store"),
            ],
        )
        .await;
        assert_eq!(eu.status, 200, "{name}: {}", eu.body);
        assert!(
            eu.header("x-meridian-region").starts_with("eu-"),
            "{name}: x-meridian-residency ignored: served in {}",
            eu.header("x-meridian-region")
        );
        let new: Vec<_> = fleet.records().into_iter().skip(seen).collect();
        assert!(!new.is_empty(), "{name}: the fleet saw nothing");
        for r in &new {
            let at = r.inference_region.as_deref().unwrap_or(&r.endpoint_region);
            assert!(
                at.starts_with("eu-"),
                "{name}: processed in {at} under an EU-only header"
            );
        }

        // plan: the deadline header shortens the deadline.
        let stall = FaultSet {
            stall_ms: Some(5_000),
            ..FaultSet::default()
        };
        for r in REGIONS {
            assert!(fleet.set_faults(r, stall.clone()));
        }
        let late = send(
            &gw,
            door,
            &[
                authed[0],
                ("x-meridian-deadline-ms", "300"),
                ("x-meridian-cache", "no-store"),
            ],
        )
        .await;
        for r in REGIONS {
            fleet.set_faults(r, FaultSet::default());
        }
        // 529 is Anthropic's "overloaded" for the same condition.
        assert!(
            matches!(late.status, 503 | 529),
            "{name}: {} {}",
            late.status,
            late.body
        );
        assert!(
            late.body.contains("300 ms deadline"),
            "{name}: {}",
            late.body
        );
        assert!(!late.header("x-amzn-requestid").is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_residency_holds_on_every_front_door() {
    let fleet = common::fleet(&REGIONS).await;
    let eu_key = "mk-eu-tenant-table-0000000001";
    let us_key = "mk-us-tenant-table-0000000001";
    let hash = |k: &str| meridian_gateway::keys::hash_text(&meridian_gateway::keys::hash(k));
    let toml = format!(
        "region = \"us-east-1\"\n[models.chat]\nmodel = \"claude-sonnet-4-5\"\n\
         [tenants.eu]\napi_keys = [\"{}\"]\nresidency = [\"eu\"]\n\
         [tenants.anywhere]\napi_keys = [\"{}\"]\n",
        hash(eu_key),
        hash(us_key)
    );
    let (gw, _) = common::gateway_with(&fleet, &toml, Health::default()).await;
    for door in DOORS.iter().filter(|d| d.invocation) {
        let name = door.name;
        // The other tenant, unrestricted, is served nearest: the check can tell.
        let us = send(&gw, door, &[("authorization", &format!("Bearer {us_key}"))]).await;
        assert!(us.header("x-meridian-region").starts_with("us-"), "{name}");
        let seen = fleet.records().len();
        let eu = send(&gw, door, &[("authorization", &format!("Bearer {eu_key}"))]).await;
        assert_eq!(eu.status, 200, "{name}: {}", eu.body);
        let new: Vec<_> = fleet.records().into_iter().skip(seen).collect();
        assert!(!new.is_empty(), "{name}");
        for r in &new {
            let at = r.inference_region.as_deref().unwrap_or(&r.endpoint_region);
            assert!(
                at.starts_with("eu-"),
                "{name}: an EU tenant's request processed in {at}"
            );
        }
        // A header cannot widen it.
        let wide = send(
            &gw,
            door,
            &[
                ("authorization", &format!("Bearer {eu_key}")),
                ("x-meridian-residency", "us"),
            ],
        )
        .await;
        assert_ne!(
            wide.status, 200,
            "{name}: header widened a tenant's residency: {}",
            wide.body
        );
    }
}
