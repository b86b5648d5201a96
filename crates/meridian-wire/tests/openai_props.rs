//! Property: an OpenAI conversation survives translation to Converse, and an
//! assistant message comes back from Converse exactly as it went in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use meridian_wire::converse::validate_request;
use meridian_wire::openai::{from_converse, to_converse};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?éü]{1,40}"
}

fn arb_call() -> impl Strategy<Value = Value> {
    ("[a-z]{3,8}", "[a-zA-Z0-9_]{4,12}", proptest::collection::btree_map("[a-z]{1,6}", any::<i32>(), 0..4)).prop_map(|(name, id, args)| {
        json!({"id": format!("call_{id}"), "type": "function", "function": {"name": name, "arguments": serde_json::to_string(&args).unwrap()}})
    })
}

fn arb_assistant() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(arb_text()),
        proptest::collection::vec(arb_call(), 0..3),
    )
        .prop_filter("an assistant message says something", |(t, c)| {
            t.is_some() || !c.is_empty()
        })
        .prop_map(|(text, calls)| {
            let mut m = json!({"role": "assistant", "content": text});
            if !calls.is_empty() {
                m["tool_calls"] = json!(calls);
            }
            m
        })
}

proptest! {
    #[test]
    fn assistant_messages_round_trip(user in arb_text(), system in proptest::option::of(arb_text()), assistant in arb_assistant()) {
        let mut messages = vec![];
        if let Some(s) = &system { messages.push(json!({"role": "system", "content": s})); }
        messages.push(json!({"role": "user", "content": user}));
        messages.push(assistant.clone());
        let t = to_converse(&json!({"model": "m", "messages": messages})).unwrap();
        prop_assert!(validate_request(&t.converse).is_ok());
        prop_assert_eq!(&t.converse["messages"][0]["content"][0]["text"], &json!(user));
        if let Some(s) = &system { prop_assert_eq!(&t.converse["system"][0]["text"], &json!(s)); }

        let last = t.converse["messages"].as_array().unwrap().last().unwrap().clone();
        let resp = json!({"output": {"message": last}, "stopReason": "end_turn",
                          "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}});
        let back = from_converse(&resp, "id", "m", 0);
        let msg = &back["choices"][0]["message"];
        let calls = assistant["tool_calls"].as_array().cloned().unwrap_or_default();
        match assistant["content"].as_str() {
            Some(text) => prop_assert_eq!(&msg["content"], &json!(text)),
            None => prop_assert!(msg["content"].is_null()),
        }
        let got = msg["tool_calls"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(got.len(), calls.len());
        for (a, b) in got.iter().zip(&calls) {
            prop_assert_eq!(&a["id"], &b["id"]);
            prop_assert_eq!(&a["function"]["name"], &b["function"]["name"]);
            let pa: Value = serde_json::from_str(a["function"]["arguments"].as_str().unwrap()).unwrap();
            let pb: Value = serde_json::from_str(b["function"]["arguments"].as_str().unwrap()).unwrap();
            prop_assert_eq!(pa, pb);
        }
        prop_assert_eq!(back["usage"]["total_tokens"].as_u64(), Some(3));
    }
}
