//! The guard stages: Meridian's own detectors on what goes to the model
//! (guard input) and on what comes back (guard output). Nothing leaves the
//! gateway for scanning.
//!
//! A request's guards are its tenant's and its model's `[guards]` entries;
//! where both find the same text, the stricter action wins. Input covers
//! every string of the upstream body (system prompts, messages, tool
//! results) except binary fields; output covers text and tool arguments.
//! `anonymize` gives the model stable placeholders (`<EMAIL_1>`) and puts the
//! original values back in the answer; `mask` replaces a value by its type
//! (`[EMAIL]`) both ways; `block` refuses, naming the types, never the
//! values; `log` only counts. Records and metrics carry types, actions and
//! counts, never values.

mod detect;
pub mod stream;

use crate::metrics::Family;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use meridian_config::GuardAction;
use meridian_wire::BedrockError;
use serde::Serialize;
use serde_json::Value;

pub use detect::{Finding, Scanner, iban_mod97, luhn};

/// String fields never scanned: binary content, signatures and identifiers.
/// (A document's text — Converse `source.text`, Anthropic's text `source`,
/// the bytes of a text format — is read: see [`Session::walk`].)
const SKIP_KEYS: [&str; 8] = [
    "bytes",
    "data",
    "signature",
    "redactedContent",
    "toolUseId",
    "image",
    "video",
    "anthropic_version",
];

/// Converse document formats whose bytes are text the model reads.
const TEXT_DOCUMENT_FORMATS: [&str; 4] = ["txt", "md", "csv", "html"];

/// Which way the text flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    /// `input` or `output`, in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

/// One line of what the guards did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fired {
    pub direction: Direction,
    #[serde(rename = "type")]
    pub label: String,
    pub action: &'static str,
    pub count: u64,
}

/// The guards' compiled `[guards]` entries.
#[derive(Debug, Default)]
pub struct Guards {
    by_name: HashMap<String, Arc<Scanner>>,
}

impl Guards {
    /// Compiles every `[guards]` entry.
    pub fn new(config: &meridian_config::Config) -> Guards {
        Guards::of(config.guards.values())
    }

    /// Compiles these guards.
    pub fn of<'g>(guards: impl IntoIterator<Item = &'g meridian_config::Guard>) -> Guards {
        Guards {
            by_name: guards
                .into_iter()
                .map(|g| (g.name.clone(), Arc::new(Scanner::new(g))))
                .collect(),
        }
    }

    /// The session for one request: the tenant's guard and the model's.
    pub fn session(&self, names: [Option<&str>; 2]) -> Option<Session> {
        let mut scanners: Vec<Arc<Scanner>> = Vec::new();
        for n in names.into_iter().flatten() {
            if let Some(s) = self.by_name.get(n)
                && !scanners.iter().any(|x| Arc::ptr_eq(x, s))
            {
                scanners.push(s.clone());
            }
        }
        (!scanners.is_empty()).then(|| Session {
            scanners,
            placeholders: Vec::new(),
            counters: HashMap::new(),
            fired: BTreeMap::new(),
            scratch: Vec::new(),
        })
    }
}

/// A finding, resolved to what it is and what to do.
#[derive(Debug, Clone)]
struct Hit {
    start: usize,
    end: usize,
    label: Arc<str>,
    action: GuardAction,
}

/// Refused: the types that a `block` rule found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub direction: Direction,
    pub labels: Vec<String>,
}

impl Blocked {
    /// Input the guard cannot read (not JSON it can parse, a text document
    /// that does not decode): it does not go upstream unscanned.
    pub fn unreadable(direction: Direction, what: String) -> Blocked {
        Blocked {
            direction,
            labels: vec![format!("{what} that the guard cannot read")],
        }
    }

    /// The error the client gets: it names the types, never the values.
    pub fn error(&self) -> BedrockError {
        let what = match self.direction {
            Direction::Input => "The request",
            Direction::Output => "The model's answer",
        };
        BedrockError::validation(format!(
            "{what} contains data that this gateway's guard policy blocks: {}.",
            self.labels.join(", ")
        ))
    }
}

/// One request's guards, and what they did to it.
#[derive(Debug)]
pub struct Session {
    scanners: Vec<Arc<Scanner>>,
    /// (placeholder, original value), in order of first appearance.
    placeholders: Vec<(String, String)>,
    counters: HashMap<String, u32>,
    fired: BTreeMap<(Direction, String, &'static str), u64>,
    scratch: Vec<Finding>,
}

impl Session {
    /// The anonymized values: (placeholder, original), in order of first
    /// appearance.
    pub fn placeholders(&self) -> &[(String, String)] {
        &self.placeholders
    }

    /// What fired, for the invocation record.
    pub fn report(&self) -> Vec<Fired> {
        self.fired
            .iter()
            .map(|((direction, label, action), count)| Fired {
                direction: *direction,
                label: label.clone(),
                action,
                count: *count,
            })
            .collect()
    }

    /// Counts what fired in the metrics.
    pub fn count(&self, metrics: &crate::metrics::Metrics, model: &str) {
        for ((direction, label, action), n) in &self.fired {
            metrics.add(
                Family::GuardFindingsTotal,
                crate::metrics::labels([
                    ("model", model),
                    ("direction", direction.name()),
                    ("detector", label),
                    ("action", action),
                ]),
                *n as f64,
            );
        }
    }

    /// Whether any detector may still be completing in a text that ends
    /// mid-phrase: the most words a word-list phrase has.
    pub fn phrase_words(&self) -> usize {
        self.scanners
            .iter()
            .map(|s| s.max_phrase_words())
            .max()
            .unwrap_or(1)
    }

    fn hits(&mut self, text: &str) -> Vec<Hit> {
        // Findings of every scanner, stricter first where two overlap.
        let mut all: Vec<(Finding, usize)> = Vec::new();
        for (si, s) in self.scanners.iter().enumerate() {
            self.scratch.clear();
            s.scan(text, &mut self.scratch);
            all.extend(self.scratch.iter().map(|f| (*f, si)));
        }
        if all.is_empty() {
            return Vec::new();
        }
        let action = |(f, si): &(Finding, usize)| self.scanners[*si].rules[f.rule].action;
        all.sort_by(|a, b| {
            a.0.start
                .cmp(&b.0.start)
                .then(b.0.end.cmp(&a.0.end))
                .then(action(b).cmp(&action(a)))
        });
        let mut out: Vec<Hit> = Vec::new();
        let mut reach = 0;
        for (i, (f, si)) in all.iter().enumerate() {
            if i > 0 && f.start < reach {
                // Overlaps a kept finding: a stricter action still wins.
                let a = self.scanners[*si].rules[f.rule].action;
                if let Some(last) = out.last_mut()
                    && a > last.action
                {
                    last.action = a;
                }
                continue;
            }
            reach = f.end;
            let rule = &self.scanners[*si].rules[f.rule];
            out.push(Hit {
                start: f.start,
                end: f.end,
                label: rule.label.clone(),
                action: rule.action,
            });
        }
        out
    }

    fn placeholder(&mut self, label: &str, value: &str) -> String {
        if let Some((p, _)) = self.placeholders.iter().find(|(_, v)| v == value) {
            return p.clone();
        }
        let n = self.counters.entry(label.to_string()).or_insert(0);
        *n += 1;
        let p = format!("<{label}_{n}>");
        self.placeholders.push((p.clone(), value.to_string()));
        p
    }

    fn note(&mut self, direction: Direction, label: &str, action: GuardAction) {
        *self
            .fired
            .entry((direction, label.to_string(), action.name()))
            .or_insert(0) += 1;
    }

    /// Applies the guards to one text. `Ok(None)`: unchanged. On output,
    /// `anonymize` findings are left as they are (the values are the
    /// client's) and placeholders are put back; `json` when the text is a
    /// fragment of JSON (tool arguments), so values put back are escaped.
    pub fn text(
        &mut self,
        text: &str,
        direction: Direction,
        json: bool,
    ) -> Result<Option<String>, Blocked> {
        let hits = self.hits(text);
        let mut blocked: Vec<String> = Vec::new();
        for h in &hits {
            self.note(direction, &h.label, h.action);
            if h.action == GuardAction::Block && !blocked.iter().any(|l| **l == *h.label) {
                blocked.push(h.label.to_string());
            }
        }
        if !blocked.is_empty() {
            return Err(Blocked {
                direction,
                labels: blocked,
            });
        }
        let changes = hits.iter().any(|h| match h.action {
            GuardAction::Mask => true,
            GuardAction::Anonymize => direction == Direction::Input,
            GuardAction::Log | GuardAction::Block => false,
        });
        let restore =
            direction == Direction::Output && !self.placeholders.is_empty() && text.contains('<');
        if !changes && !restore {
            return Ok(None);
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut at = 0;
        for h in &hits {
            let replacement = match h.action {
                GuardAction::Mask => format!("[{}]", h.label),
                GuardAction::Anonymize if direction == Direction::Input => {
                    self.placeholder(&h.label, &text[h.start..h.end])
                }
                _ => continue,
            };
            out.push_str(&text[at..h.start]);
            out.push_str(&replacement);
            at = h.end;
        }
        out.push_str(&text[at..]);
        if restore {
            for (p, v) in &self.placeholders {
                if out.contains(p.as_str()) {
                    let v = if json {
                        let quoted = serde_json::to_string(v).unwrap_or_default();
                        quoted
                            .get(1..quoted.len().saturating_sub(1))
                            .unwrap_or_default()
                            .to_string()
                    } else {
                        v.clone()
                    };
                    out = out.replace(p.as_str(), &v);
                }
            }
        }
        Ok((out != text).then_some(out))
    }

    /// Applies the guards to every string of a JSON value (not to keys, not
    /// to binary fields). Returns whether anything changed.
    pub fn json(&mut self, v: &mut Value, direction: Direction) -> Result<bool, Blocked> {
        let mut changed = false;
        let mut blocked: Option<Blocked> = None;
        self.walk(v, direction, &mut changed, &mut blocked);
        match blocked {
            Some(b) => Err(b),
            None => Ok(changed),
        }
    }

    fn walk(
        &mut self,
        v: &mut Value,
        direction: Direction,
        changed: &mut bool,
        blocked: &mut Option<Blocked>,
    ) {
        match v {
            Value::String(s) => match self.text(s, direction, false) {
                Ok(Some(new)) => {
                    *s = new;
                    *changed = true;
                }
                Ok(None) => {}
                Err(b) => merge(blocked, b),
            },
            Value::Array(a) => {
                for x in a {
                    self.walk(x, direction, changed, blocked);
                }
            }
            Value::Object(o) => {
                // Anthropic's text document source: `data` is plain text.
                let text_source = o.get("type").and_then(Value::as_str) == Some("text")
                    && o.get("media_type")
                        .and_then(Value::as_str)
                        .is_some_and(|m| m.starts_with("text/"));
                for (k, x) in o.iter_mut() {
                    if k == "document" {
                        self.document(x, direction, changed, blocked);
                    } else if !SKIP_KEYS.contains(&k.as_str()) || (text_source && k == "data") {
                        self.walk(x, direction, changed, blocked);
                    }
                }
            }
            _ => {}
        }
    }

    /// A Converse document: its text source is walked like any text, and
    /// the bytes of a text format are decoded, scanned and encoded again.
    /// Binary formats (PDF, Word, Excel) are passed as they are.
    fn document(
        &mut self,
        v: &mut Value,
        direction: Direction,
        changed: &mut bool,
        blocked: &mut Option<Blocked>,
    ) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let textual = v
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| TEXT_DOCUMENT_FORMATS.contains(&f));
        if textual && let Some(Value::String(bytes)) = v.pointer_mut("/source/bytes") {
            let text = b64
                .decode(bytes.as_bytes())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok());
            let Some(text) = text else {
                let b = Blocked::unreadable(direction, "a text document".into());
                merge(blocked, b);
                return;
            };
            let mut t = Value::String(text);
            let mut here = false;
            self.walk(&mut t, direction, &mut here, blocked);
            if here && let Value::String(t) = t {
                *bytes = b64.encode(t.as_bytes());
                *changed = true;
            }
        }
        // Everything else in it (the name, `source.text`, `source.content`)
        // as any JSON; `bytes` stays skipped.
        self.walk(v, direction, changed, blocked);
    }
    /// Applies the guards to a JSON body; `Ok(None)` when it is unchanged
    /// (or, for an answer, not JSON). A request body that is not JSON the
    /// guard can parse — a lone surrogate, a byte-order mark, trailing bytes,
    /// nesting too deep — is refused: it never goes upstream unscanned.
    pub fn body(
        &mut self,
        body: &[u8],
        direction: Direction,
    ) -> Result<Option<(bytes::Bytes, Value)>, Blocked> {
        let mut v = match serde_json::from_slice::<Value>(body) {
            Ok(v) => v,
            Err(_) if direction == Direction::Output => return Ok(None),
            Err(e) => {
                return Err(Blocked::unreadable(direction, format!("a body ({e})")));
            }
        };
        if self.json(&mut v, direction)? {
            let bytes = bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
            return Ok(Some((bytes, v)));
        }
        Ok(None)
    }
}

/// Adds `b`'s labels to what is already blocked.
fn merge(blocked: &mut Option<Blocked>, b: Blocked) {
    match blocked {
        Some(all) => {
            for l in b.labels {
                if !all.labels.contains(&l) {
                    all.labels.push(l);
                }
            }
        }
        None => *blocked = Some(b),
    }
}

#[cfg(test)]
mod tests {
    use meridian_config::{Builtin, Detector, Guard, GuardRule};
    use serde_json::json;

    use super::*;

    fn guards(rules: &[(Builtin, GuardAction)]) -> Guards {
        let g = Guard {
            name: "g".into(),
            rules: rules
                .iter()
                .map(|(b, a)| GuardRule {
                    detector: Detector::Builtin(*b),
                    action: *a,
                })
                .collect(),
        };
        Guards::of([&g])
    }

    #[test]
    fn anonymize_gives_stable_placeholders_and_restores_them() {
        let g = guards(&[(Builtin::Email, GuardAction::Anonymize)]);
        let mut s = g.session([Some("g"), None]).unwrap();
        let mut body = json!({"messages": [{"role": "user", "content": [
            {"text": "mail a@example.com and b@example.com, again a@example.com"}]}]});
        assert!(s.json(&mut body, Direction::Input).unwrap());
        assert_eq!(
            body["messages"][0]["content"][0]["text"],
            "mail <EMAIL_1> and <EMAIL_2>, again <EMAIL_1>"
        );
        let back = s
            .text(
                "I wrote to <EMAIL_2> and <EMAIL_1>.",
                Direction::Output,
                false,
            )
            .unwrap();
        assert_eq!(
            back.as_deref(),
            Some("I wrote to b@example.com and a@example.com.")
        );
        let fired = s.report();
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].label.as_str(), fired[0].count), ("EMAIL", 3));
    }

    #[test]
    fn block_names_types_never_values_and_stricter_action_wins() {
        let g = guards(&[
            (Builtin::Card, GuardAction::Block),
            (Builtin::Email, GuardAction::Mask),
        ]);
        let mut s = g.session([Some("g"), None]).unwrap();
        let mut body = json!({"system": [{"text": "pay with 4111 1111 1111 1111"}],
            "messages": [{"content": [{"text": "x@example.org"}]}]});
        let err = s.json(&mut body, Direction::Input).unwrap_err();
        assert_eq!(err.labels, vec!["CARD".to_string()]);
        let msg = err.error().message;
        assert!(msg.contains("CARD") && !msg.contains("4111"), "{msg}");
    }

    #[test]
    fn binary_fields_are_not_scanned() {
        let g = guards(&[(Builtin::AwsAccessKey, GuardAction::Mask)]);
        let mut s = g.session([Some("g"), None]).unwrap();
        let mut body =
            json!({"content": [{"image": {"source": {"bytes": "AKIAIOSFODNN7EXAMPLE"}}}]});
        assert!(!s.json(&mut body, Direction::Input).unwrap());
    }

    /// The card every generated text may carry.
    const CARD: &str = "4111111111111111";

    /// Every string a model reads in `v`, found independently of the
    /// guard's walker: binary fields are the only ones left out.
    fn readable(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| readable(x, out)),
            Value::Object(o) => {
                for (k, x) in o {
                    if !["bytes", "data", "image", "video", "signature"].contains(&k.as_str()) {
                        readable(x, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn json_tree() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = prop_oneof![
            "[a-z ]{0,12}".prop_map(Value::String),
            "[a-z ]{0,6}".prop_map(|p| Value::String(format!("{p} card {CARD} {p}"))),
            any::<u32>().prop_map(|n| json!(n)),
        ];
        text.prop_recursive(6, 64, 6, |inner| {
            let keys = prop_oneof![
                Just("text"),
                Just("content"),
                Just("messages"),
                Just("system"),
                Just("document"),
                Just("source"),
                Just("name"),
                Just("input"),
                Just("toolResult"),
                Just("json"),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((keys, inner), 0..4).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        /// The guard input stage on arbitrary bytes: either the body is
        /// refused, or it is JSON and no string a model reads carries the
        /// blocked card.
        #[test]
        fn arbitrary_bytes_are_parsed_whole_or_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let g = guards(&[(Builtin::Card, GuardAction::Block)]);
            let mut s = g.session([Some("g"), None]).unwrap();
            if s.body(&body, Direction::Input).is_ok() {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let mut texts = Vec::new();
                readable(&v, &mut texts);
                proptest::prop_assert!(texts.iter().all(|t| !t.contains(CARD)));
            }
        }

        /// Arbitrary JSON trees of the keys requests use, some strings with
        /// the card: the guard blocks exactly when a string a model reads
        /// carries it.
        #[test]
        fn every_string_a_model_reads_is_scanned(v in json_tree()) {
            let g = guards(&[(Builtin::Card, GuardAction::Block)]);
            let mut s = g.session([Some("g"), None]).unwrap();
            let body = serde_json::to_vec(&v).unwrap();
            let mut texts = Vec::new();
            readable(&v, &mut texts);
            let carries = texts.iter().any(|t| t.contains(CARD));
            proptest::prop_assert_eq!(s.body(&body, Direction::Input).is_err(), carries);
        }
    }

    #[test]
    fn text_documents_are_read_and_binary_ones_passed() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let g = guards(&[(Builtin::Card, GuardAction::Mask)]);
        let mut s = g.session([Some("g"), None]).unwrap();
        let text = format!("card {CARD}");
        let mut body = json!({"content": [
            {"document": {"format": "txt", "name": "a", "source": {"bytes": b64.encode(&text)}}},
            {"document": {"format": "pdf", "name": "b", "source": {"bytes": b64.encode(&text)}}},
            {"document": {"format": "md", "name": "c", "source": {"text": text.clone()}}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text.clone()}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": CARD}}
        ]});
        assert!(s.json(&mut body, Direction::Input).unwrap());
        let txt = b64
            .decode(
                body.pointer("/content/0/document/source/bytes")
                    .unwrap()
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        assert!(
            !String::from_utf8(txt).unwrap().contains(CARD),
            "txt bytes masked"
        );
        let pdf = body
            .pointer("/content/1/document/source/bytes")
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(pdf, b64.encode(&text), "a binary format is passed as it is");
        assert!(
            !body
                .pointer("/content/2/document/source/text")
                .unwrap()
                .as_str()
                .unwrap()
                .contains(CARD)
        );
        assert!(
            !body
                .pointer("/content/3/source/data")
                .unwrap()
                .as_str()
                .unwrap()
                .contains(CARD)
        );
        assert_eq!(
            body.pointer("/content/4/source/data").unwrap(),
            CARD,
            "base64 data is binary"
        );
        let bad = json!({"document": {"format": "txt", "name": "a", "source": {"bytes": "%%%"}}});
        let err = s.json(&mut bad.clone(), Direction::Input).unwrap_err();
        assert!(err.labels[0].contains("cannot read"), "{:?}", err.labels);
    }
}
