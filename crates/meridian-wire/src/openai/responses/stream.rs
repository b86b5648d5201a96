//! ConverseStream events → Responses stream events, in the API's order:
//! `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its deltas (reasoning summary text, output
//! text, function call arguments), their `.done` events and
//! `response.output_item.done`, and last `response.completed` (or
//! `response.incomplete`) with the whole response and its usage.

use serde_json::{Value, json};

use super::output::{self, Meta, Status};

/// An output item being streamed.
#[derive(Debug)]
struct Open {
    /// Converse's content block index.
    block: u64,
    output_index: usize,
    item_id: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Reasoning {
        text: String,
        signature: Option<String>,
        redacted: Option<String>,
        /// The summary part was announced (on the first text).
        part: bool,
    },
    Text(String),
    Tool {
        call_id: Value,
        name: String,
        arguments: String,
    },
}

/// Turns one ConverseStream into Responses events.
#[derive(Debug)]
pub struct Stream {
    meta: Meta,
    seq: u64,
    started: bool,
    /// Finished items, at their output index.
    output: Vec<Option<Value>>,
    open: Vec<Open>,
    status: Status,
    /// The final response, once the stream ended.
    finished: Option<Value>,
}

impl Stream {
    /// A translator for the response `meta` describes.
    pub fn new(meta: Meta) -> Stream {
        Stream {
            meta,
            seq: 0,
            started: false,
            output: Vec::new(),
            open: Vec::new(),
            status: Status::Completed,
            finished: None,
        }
    }

    /// The final response object, once `response.completed` (or
    /// `.incomplete`) was produced.
    pub fn finished(&self) -> Option<&Value> {
        self.finished.as_ref()
    }

    fn emit(&mut self, out: &mut Vec<Value>, kind: &str, mut body: Value) {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(body);
    }

    fn start(&mut self, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.meta.response(Status::InProgress, Vec::new(), None);
        self.emit(out, "response.created", json!({"response": r}));
        let r = self.meta.response(Status::InProgress, Vec::new(), None);
        self.emit(out, "response.in_progress", json!({"response": r}));
    }

    /// The events for one Converse event (`name`, JSON `p`).
    pub fn event(&mut self, name: &str, p: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished.is_some() {
            return out;
        }
        self.start(&mut out);
        let block = p["contentBlockIndex"].as_u64().unwrap_or(0);
        match name {
            "contentBlockStart" => {
                if let Some(tu) = p["start"].get("toolUse") {
                    let kind = Kind::Tool {
                        call_id: tu["toolUseId"].clone(),
                        name: tu["name"].as_str().unwrap_or_default().to_string(),
                        arguments: String::new(),
                    };
                    self.open_item(&mut out, block, kind);
                }
            }
            "contentBlockDelta" => self.delta(&mut out, block, &p["delta"]),
            "contentBlockStop" => {
                if let Some(i) = self.open.iter().position(|o| o.block == block) {
                    let o = self.open.remove(i);
                    self.close(&mut out, o);
                }
            }
            "messageStop" => {
                for o in std::mem::take(&mut self.open) {
                    self.close(&mut out, o);
                }
                self.status = Status::of(p["stopReason"].as_str().unwrap_or("end_turn"));
            }
            "metadata" => self.finish_with(&mut out, Some(&p["usage"])),
            _ => {}
        }
        out
    }

    /// The end of the upstream stream: `response.completed` if no usage
    /// event ended it already.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished.is_none() {
            self.start(&mut out);
            for o in std::mem::take(&mut self.open) {
                self.close(&mut out, o);
            }
            self.finish_with(&mut out, None);
        }
        out
    }

    /// `response.failed` for a stream that broke: its error and what was
    /// produced until then.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<Value> {
        let mut out = Vec::new();
        self.start(&mut out);
        let output = self.output.iter().flatten().cloned().collect();
        let mut r = self.meta.response(Status::Failed, output, None);
        r["error"] = json!({"code": code, "message": message});
        self.emit(&mut out, "response.failed", json!({"response": r}));
        self.finished = Some(r);
        out
    }

    fn finish_with(&mut self, out: &mut Vec<Value>, usage: Option<&Value>) {
        for o in std::mem::take(&mut self.open) {
            self.close(out, o);
        }
        let items: Vec<Value> = self.output.iter().flatten().cloned().collect();
        let usage = usage.map(|u| output::usage(u, output::reasoning_tokens(&items)));
        let r = self.meta.response(self.status, items, usage);
        self.emit(out, self.status.event(), json!({"response": r}));
        self.finished = Some(r);
    }

    fn open_item(&mut self, out: &mut Vec<Value>, block: u64, kind: Kind) -> usize {
        let output_index = self.output.len();
        self.output.push(None);
        let (prefix, item) = match &kind {
            Kind::Reasoning { .. } => ("rs", None),
            Kind::Text(_) => ("msg", None),
            Kind::Tool { call_id, name, .. } => ("fc", Some((call_id.clone(), name.clone()))),
        };
        let item_id = self.meta.item_id(prefix, output_index);
        let added = match item {
            None if prefix == "rs" => output::reasoning_item(item_id.clone(), &Value::Null, false),
            None => output::message_item(item_id.clone(), "", false),
            Some((call_id, name)) => {
                self.meta
                    .function_call(item_id.clone(), &call_id, &name, String::new(), false)
            }
        };
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": output_index, "item": added}),
        );
        if prefix == "msg" {
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": output_index,
                "content_index": 0, "part": output::output_text("")}),
            );
        }
        self.open.push(Open {
            block,
            output_index,
            item_id,
            kind,
        });
        self.open.len() - 1
    }

    /// The open item of `block`, opened as `kind` when there is none (or
    /// when the block's content changed kind).
    fn item(&mut self, out: &mut Vec<Value>, block: u64, kind: Kind) -> usize {
        let same = |o: &Open| {
            o.block == block && std::mem::discriminant(&o.kind) == std::mem::discriminant(&kind)
        };
        if let Some(i) = self.open.iter().position(same) {
            return i;
        }
        if let Some(i) = self.open.iter().position(|o| o.block == block) {
            let o = self.open.remove(i);
            self.close(out, o);
        }
        self.open_item(out, block, kind)
    }

    fn delta(&mut self, out: &mut Vec<Value>, block: u64, d: &Value) {
        if let Some(t) = d["text"].as_str() {
            let i = self.item(out, block, Kind::Text(String::new()));
            let (item_id, output_index) = (self.open[i].item_id.clone(), self.open[i].output_index);
            if let Kind::Text(text) = &mut self.open[i].kind {
                text.push_str(t);
            }
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": output_index,
                "content_index": 0, "delta": t, "logprobs": []}),
            );
        } else if let Some(r) = d.get("reasoningContent") {
            let fresh = Kind::Reasoning {
                text: String::new(),
                signature: None,
                redacted: None,
                part: false,
            };
            let i = self.item(out, block, fresh);
            let (item_id, output_index) = (self.open[i].item_id.clone(), self.open[i].output_index);
            let mut announce = false;
            if let Kind::Reasoning {
                text,
                signature,
                redacted,
                part,
            } = &mut self.open[i].kind
            {
                if let Some(t) = r["text"].as_str() {
                    text.push_str(t);
                    announce = !*part;
                    *part = true;
                }
                if let Some(s) = r["signature"].as_str() {
                    signature.get_or_insert_default().push_str(s);
                }
                if let Some(b) = r["redactedContent"].as_str() {
                    redacted.get_or_insert_default().push_str(b);
                }
            }
            if announce {
                self.emit(out, "response.reasoning_summary_part.added", json!({"item_id": item_id,
                    "output_index": output_index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
            }
            if let Some(t) = r["text"].as_str() {
                self.emit(
                    out,
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": item_id,
                    "output_index": output_index, "summary_index": 0, "delta": t}),
                );
            }
        } else if let Some(input) = d["toolUse"]["input"].as_str() {
            let Some(i) = self
                .open
                .iter()
                .position(|o| o.block == block && matches!(o.kind, Kind::Tool { .. }))
            else {
                return;
            };
            let (item_id, output_index) = (self.open[i].item_id.clone(), self.open[i].output_index);
            if let Kind::Tool { arguments, .. } = &mut self.open[i].kind {
                arguments.push_str(input);
            }
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id,
                "output_index": output_index, "delta": input}),
            );
        }
    }

    fn close(&mut self, out: &mut Vec<Value>, o: Open) {
        let (id, at) = (o.item_id, o.output_index);
        let item = match o.kind {
            Kind::Text(text) => {
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": at,
                    "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": at,
                    "content_index": 0, "part": output::output_text(&text)}),
                );
                output::message_item(id, &text, true)
            }
            Kind::Reasoning {
                text,
                signature,
                redacted,
                part,
            } => {
                if part {
                    self.emit(
                        out,
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id,
                        "output_index": at, "summary_index": 0, "text": text}),
                    );
                    self.emit(out, "response.reasoning_summary_part.done", json!({"item_id": id,
                        "output_index": at, "summary_index": 0, "part": {"type": "summary_text", "text": text}}));
                }
                let block = match redacted {
                    Some(r) => json!({"redactedContent": r}),
                    None => json!({"reasoningText": {"text": text, "signature": signature}}),
                };
                output::reasoning_item(id, &block, true)
            }
            Kind::Tool {
                call_id,
                name,
                arguments,
            } => {
                let arguments = if arguments.is_empty() {
                    "{}".to_string()
                } else {
                    arguments
                };
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id,
                    "output_index": at, "arguments": arguments}),
                );
                self.meta
                    .function_call(id, &call_id, &name, arguments, true)
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
        if let Some(slot) = self.output.get_mut(at) {
            *slot = Some(item);
        }
    }
}
