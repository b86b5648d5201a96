//! The guard input stage on arbitrary bodies: either the request is refused,
//! or the body that goes upstream is JSON and no string a model reads in it
//! carries what the guard blocks (a marker, matched here independently of
//! the guard's own walker).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_config::{Detector, Guard, GuardAction, GuardRule};
use meridian_gateway::guard::{Direction, Guards};
use serde_json::Value;

const MARKER: &str = "mrdnsecret";

/// Every string a model reads: binary fields are the only ones left out.
fn readable(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.to_ascii_lowercase()),
        Value::Array(a) => a.iter().for_each(|x| readable(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if !["bytes", "data", "image", "video", "signature", "redactedContent"]
                    .contains(&k.as_str())
                {
                    readable(x, out);
                }
            }
        }
        _ => {}
    }
}

fn carries(text: &str) -> bool {
    // Whole words, as the word detector matches them.
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == MARKER)
}

/// Compiled once: the fuzzer's time goes to the bodies, not to the scanner.
fn guards() -> &'static Guards {
    static GUARDS: std::sync::OnceLock<Guards> = std::sync::OnceLock::new();
    GUARDS.get_or_init(|| {
        let guard = Guard {
            name: "g".into(),
            rules: vec![GuardRule {
                detector: Detector::Words {
                    label: "SECRET".into(),
                    words: vec![MARKER.into()],
                },
                action: GuardAction::Block,
            }],
        };
        Guards::of([&guard])
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(mut session) = guards().session([Some("g"), None]) else {
        return;
    };
    let upstream = match session.body(data, Direction::Input) {
        Err(_) => return,
        Ok(Some((body, _))) => body.to_vec(),
        Ok(None) => data.to_vec(),
    };
    let v: Value = serde_json::from_slice(&upstream).expect("a body that passed is JSON");
    let mut texts = Vec::new();
    readable(&v, &mut texts);
    assert!(
        !texts.iter().any(|t| carries(t)),
        "a blocked word went upstream: {texts:?}"
    );
});
