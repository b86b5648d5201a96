//! OpenAI's Responses API on `/v1/responses`: `POST` (plain and streamed),
//! `GET /v1/responses/{id}`, `DELETE`, `…/input_items`. An adapter only —
//! the request is translated to Converse and runs every stage of the
//! pipeline; what this door adds is stored state: a response is kept
//! ([`crate::responses_store`]) before the client can read that it
//! finished, and `previous_response_id` continues the stored conversation
//! when the request's tenant and residency policy may read it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use meridian_catalog::Policy;
use meridian_wire::event::{Event, Vocabulary};
use meridian_wire::openai::OpenAiError;
use meridian_wire::openai::responses::{self as wire, Meta, Stream};
use meridian_wire::{Action, BedrockError, converse};
use serde_json::{Value, json};

use crate::canonical::{Call, Head};
use crate::execute::{Events, Served};
use crate::live::Live;
use crate::pipeline::{self, Decoded, FrontDoor};
use crate::responses_store::Stored;
use crate::state::AppState;
use crate::{plan, respond};

/// Names the built-in tools left out of a request (no Bedrock model runs
/// them through Converse).
pub const DROPPED_TOOLS_HEADER: &str = "x-meridian-dropped-tools";

/// The Responses wire format.
#[derive(Debug)]
pub struct Responses;

/// What encoding the answer needs, and what storing it needs.
pub struct Responding {
    request_id: String,
    meta: Meta,
    keep: Option<Keep>,
    dropped_tools: Vec<String>,
}

/// Where and what to store once the response is finished.
struct Keep {
    state: Arc<AppState>,
    tenant: String,
    input: Vec<Value>,
    history: Vec<Value>,
}

impl Keep {
    /// Stores the finished `response`, processed in `region`.
    async fn store(self, region: String, response: Value) {
        let Keep {
            state,
            tenant,
            input,
            history,
        } = self;
        let Some(id) = response["id"].as_str().map(str::to_string) else {
            return;
        };
        let stored = Stored {
            region,
            response,
            input,
            history,
        };
        let ttl = state.config.responses.ttl;
        let shared = state.limiter.shared();
        if state
            .responses
            .put(shared, &tenant, &id, stored, ttl)
            .await
            .is_err()
        {
            tracing::warn!(response = %id, "the state backend did not answer; the response is not stored");
        }
    }
}

/// Everything under `/v1/responses`.
pub async fn handle(State(live): State<Arc<Live>>, req: Request) -> Response {
    pipeline::handle::<Responses>(live.get(), req).await
}

/// What a path under `/v1/responses` asks.
enum Route<'a> {
    Create,
    Get(&'a str),
    Delete(&'a str),
    InputItems(&'a str),
    Cancel,
}

fn route(parts: &Parts) -> Option<Route<'_>> {
    let rest = parts.uri.path().strip_prefix("/v1/responses")?;
    let method = parts.method.as_str();
    let mut segments = rest.split('/').skip(1);
    match (method, segments.next(), segments.next(), segments.next()) {
        ("POST", None, ..) => Some(Route::Create),
        ("GET", Some(id), None, _) if !id.is_empty() => Some(Route::Get(id)),
        ("DELETE", Some(id), None, _) if !id.is_empty() => Some(Route::Delete(id)),
        ("GET", Some(id), Some("input_items"), None) => Some(Route::InputItems(id)),
        ("POST", Some(_), Some("cancel"), None) => Some(Route::Cancel),
        _ => None,
    }
}

impl FrontDoor for Responses {
    const API: &'static str = "openai";
    type Ctx = Responding;
    type Error = OpenAiError;

    fn head(parts: &Parts) -> Head {
        let (operation, invocation) = match route(parts) {
            Some(Route::Create) => ("Converse", true),
            Some(Route::Get(_)) => ("GetResponse", false),
            Some(Route::Delete(_)) => ("DeleteResponse", false),
            Some(Route::InputItems(_)) => ("ListInputItems", false),
            Some(Route::Cancel) => ("CancelResponse", false),
            None => return Head::unknown(),
        };
        Head {
            operation,
            requested: String::new(),
            invocation,
        }
    }

    fn decode(
        state: &Arc<AppState>,
        parts: &Parts,
        body: Bytes,
        request_id: &str,
        tenant: &meridian_config::Tenant,
    ) -> Result<Decoded<Responding, OpenAiError>, OpenAiError> {
        let policy = plan::request_policy(state, &parts.headers, tenant.residency.as_ref())
            .map_err(|e| OpenAiError::from(&e))?;
        let tenant = tenant.name.clone();
        let read = |id: &str| {
            (
                state.clone(),
                tenant.clone(),
                id.to_string(),
                policy.clone(),
            )
        };
        match route(parts) {
            Some(Route::Create) => create(state, &body, request_id, tenant, policy),
            Some(Route::Get(id)) => {
                let (state, tenant, id, policy) = read(id);
                Ok(Decoded::Pending(Box::pin(async move {
                    let s = lookup(&state, &tenant, &id, policy.as_ref()).await?;
                    Ok(Decoded::Local(respond::json(&s.response)))
                })))
            }
            Some(Route::Delete(id)) => {
                let (state, tenant, id, policy) = read(id);
                Ok(Decoded::Pending(Box::pin(async move {
                    lookup(&state, &tenant, &id, policy.as_ref()).await?;
                    let shared = state.limiter.shared();
                    state
                        .responses
                        .delete(shared, &tenant, &id)
                        .await
                        .map_err(|_| unavailable())?;
                    let gone = json!({"id": id, "object": "response.deleted", "deleted": true});
                    Ok(Decoded::Local(respond::json(&gone)))
                })))
            }
            Some(Route::InputItems(id)) => {
                let (state, tenant, id, policy) = read(id);
                let query = parts.uri.query().unwrap_or_default().to_string();
                Ok(Decoded::Pending(Box::pin(async move {
                    let s = lookup(&state, &tenant, &id, policy.as_ref()).await?;
                    Ok(Decoded::Local(respond::json(&input_items(&s, &query)?)))
                })))
            }
            Some(Route::Cancel) => Err(OpenAiError::invalid(
                "response_id",
                "only background responses can be cancelled, and Meridian runs none in the background",
            )),
            None => Err(OpenAiError {
                status: 404,
                kind: "invalid_request_error",
                message: format!("no route {} {}", parts.method, parts.uri.path()),
                param: None,
                code: Some("unknown_url"),
            }),
        }
    }

    fn unary(
        c: Responding,
        served: &Served,
        body: Bytes,
        _usage: &crate::usage::Usage,
    ) -> Result<Response, OpenAiError> {
        let answer = crate::openai::upstream_json(&body)?;
        // Bedrock's OpenAI-compatible endpoint answered with a response object.
        let response = if served.candidate.surface.is_openai() {
            answer
        } else {
            wire::from_converse(&c.meta, &answer)
        };
        let bytes = meridian_wire::json_bytes(&response);
        let body = match c.keep {
            // Stored before the client can read the answer, so its next
            // request finds it.
            Some(keep) => {
                let region = respond::served_region(served).to_string();
                Body::from_stream(futures_util::stream::once(async move {
                    keep.store(region, response).await;
                    Ok::<_, std::convert::Infallible>(bytes)
                }))
            }
            None => Body::from(bytes),
        };
        let mut r = respond::with(served.status.as_u16(), Some("application/json"), body);
        headers(&mut r, &c.request_id, &c.dropped_tools);
        Ok(r)
    }

    fn stream(c: Responding, served: &Served, events: Events) -> Response {
        let t = Sse {
            stream: Stream::new(c.meta),
            keep: c.keep,
            region: respond::served_region(served).to_string(),
            pending: None,
            passthrough: false,
        };
        let mut r = respond::sse(served.status.as_u16(), crate::sse::body(events, t));
        headers(&mut r, &c.request_id, &c.dropped_tools);
        r
    }

    fn guard_kept(c: &mut Responding, guard: &mut crate::guard::Session) {
        let Some(keep) = c.keep.as_mut() else {
            return;
        };
        let mut input = Value::Array(std::mem::take(&mut keep.input));
        // The same content passed the guard on its way upstream, so it is
        // not blocked here; if it were, nothing is kept.
        if guard
            .json(&mut input, crate::guard::Direction::Input)
            .is_err()
        {
            c.keep = None;
            return;
        }
        if let Value::Array(items) = input {
            keep.input = items;
        }
    }

    fn from_bedrock(e: &BedrockError) -> OpenAiError {
        OpenAiError::from(e)
    }

    fn code(e: &OpenAiError) -> (u16, &'static str) {
        (e.status, e.code.unwrap_or(e.kind))
    }

    fn error(request_id: &str, e: &OpenAiError) -> Response {
        let mut r = respond::with(
            e.status,
            Some("application/json"),
            Body::from(meridian_wire::json_bytes(&e.body())),
        );
        respond::set_header(&mut r, "x-request-id", request_id);
        r
    }
}

fn headers(r: &mut Response, request_id: &str, dropped_tools: &[String]) {
    respond::set_header(r, "x-request-id", request_id);
    if !dropped_tools.is_empty() {
        respond::set_header(r, DROPPED_TOOLS_HEADER, &dropped_tools.join(","));
    }
}

/// `POST /v1/responses`.
fn create(
    state: &Arc<AppState>,
    body: &Bytes,
    request_id: &str,
    tenant: String,
    policy: Option<Policy>,
) -> Result<Decoded<Responding, OpenAiError>, OpenAiError> {
    let mut req: wire::Request = serde_json::from_slice(body).map_err(|e| {
        OpenAiError::invalid(
            "body",
            format!("the request body is not a Responses request: {e}"),
        )
    })?;
    if req.background == Some(true) {
        return Err(OpenAiError::invalid(
            "background",
            "background responses are not supported by Meridian (Bedrock runs them on Mantle only, and Meridian does not pass them there yet); send the request without background",
        ));
    }
    let items = req
        .input
        .take()
        .map(wire::Input::into_items)
        .unwrap_or_default();
    let keep = state.config.responses.store && req.store != Some(false);
    let request_id = request_id.to_string();
    let Some(previous) = req.previous_response_id.clone() else {
        let keep = keep.then(|| (state.clone(), tenant));
        let passthrough = body.clone();
        return invoke(state, req, Vec::new(), items, request_id, keep, passthrough);
    };
    if !state.config.responses.store {
        return Err(OpenAiError::invalid(
            "previous_response_id",
            "this gateway keeps no responses ([responses] store is off), so previous_response_id cannot be used; send the whole conversation as input",
        ));
    }
    let state = state.clone();
    let raw = body.clone();
    Ok(Decoded::Pending(Box::pin(async move {
        let before = lookup(&state, &tenant, &previous, policy.as_ref()).await?;
        let keep = keep.then(|| (state.clone(), tenant));
        let history = before.conversation();
        let passthrough = whole(&raw, &history, &items);
        invoke(&state, req, history, items, request_id, keep, passthrough)
    })))
}

/// The request as an endpoint that keeps no state of Meridian's takes it:
/// the whole conversation as its input, no `previous_response_id`.
fn whole(raw: &[u8], history: &[Value], input: &[Value]) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(raw) else {
        return Bytes::copy_from_slice(raw);
    };
    if let Some(o) = v.as_object_mut() {
        o.remove("previous_response_id");
        let all: Vec<Value> = history.iter().chain(input).cloned().collect();
        o.insert("input".into(), Value::Array(all));
    }
    meridian_wire::json_bytes(&v)
}

/// The Converse call for a request whose conversation so far is `history`.
fn invoke(
    state: &AppState,
    req: wire::Request,
    history: Vec<Value>,
    input: Vec<Value>,
    request_id: String,
    keep: Option<(Arc<AppState>, String)>,
    passthrough: Bytes,
) -> Result<Decoded<Responding, OpenAiError>, OpenAiError> {
    let all: Vec<Value> = history.iter().chain(&input).cloned().collect();
    let t = wire::to_converse(&req, &all)?;
    converse::validate_request(&t.converse).map_err(|e| OpenAiError::from(&e))?;
    crate::openai::capable(
        state,
        &req.model,
        t.reasoning.then_some("reasoning.effort"),
        t.structured.then_some("text.format"),
    )?;
    let stream = req.stream == Some(true);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Unguessable: the ID is what a stored response is found by.
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let dropped_tools = t.tools.dropped.clone();
    let meta = Meta::new(id, created, &req, t.tools, keep.is_some());
    let keep = keep.map(|(state, tenant)| Keep {
        state,
        tenant,
        input,
        history,
    });
    let action = if stream {
        Action::ConverseStream
    } else {
        Action::Converse
    };
    let call = Call {
        operation: action.operation(),
        action,
        requested: req.model,
        body: meridian_wire::json_bytes(&t.converse),
        json: Some(t.converse),
        streaming: stream,
        forward: Vec::new(),
        more: Vec::new(),
        envelope: None,
        messages: false,
        openai: Some(crate::canonical::OpenAiBody {
            path: "/v1/responses",
            body: passthrough,
        }),
    };
    let ctx = Responding {
        request_id,
        meta,
        keep,
        dropped_tools,
    };
    Ok(Decoded::Invoke(call, ctx))
}

/// The tenant's stored response `id`, if the request's policy allows the
/// region that processed it; otherwise it does not exist for this request.
async fn lookup(
    state: &AppState,
    tenant: &str,
    id: &str,
    policy: Option<&Policy>,
) -> Result<Arc<Stored>, OpenAiError> {
    let shared = state.limiter.shared();
    match state.responses.get(shared, tenant, id).await {
        Err(_) => Err(unavailable()),
        Ok(Some(s)) if policy.is_none_or(|p| p.allows(&s.region)) => Ok(s),
        Ok(_) => Err(OpenAiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!("Response with id '{id}' not found."),
            param: Some("response_id".into()),
            code: None,
        }),
    }
}

fn unavailable() -> OpenAiError {
    OpenAiError {
        status: 503,
        kind: "server_error",
        message: "the state backend that keeps responses did not answer; retry shortly".into(),
        param: None,
        code: None,
    }
}

/// `GET …/input_items`: this response's input items, each with an ID;
/// `order` (`desc` by default), `limit` (20; 1–100) and `after`.
fn input_items(s: &Stored, query: &str) -> Result<Value, OpenAiError> {
    let mut order = "desc";
    let mut limit = 20usize;
    let mut after: Option<&str> = None;
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match k {
            "order" if v == "asc" || v == "desc" => order = if v == "asc" { "asc" } else { "desc" },
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| OpenAiError::invalid("limit", "limit must be 1 to 100"))?;
            }
            "after" => after = Some(v),
            _ => {}
        }
    }
    let tail = s.response["id"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("resp_");
    let mut items: Vec<Value> = s
        .input
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut item = item.clone();
            if item.get("type").is_none() {
                item["type"] = json!("message");
            }
            // Listed as the API lists messages: content as parts.
            if let Some(text) = item["content"].as_str().map(str::to_string) {
                let part = if item["role"] == "assistant" {
                    "output_text"
                } else {
                    "input_text"
                };
                item["content"] = json!([{"type": part, "text": text}]);
            }
            if item.get("id").is_none() {
                item["id"] = json!(format!("msg_{tail}in{i:03}"));
            }
            item
        })
        .collect();
    if order == "desc" {
        items.reverse();
    }
    let start = after
        .and_then(|a| items.iter().position(|i| i["id"] == a))
        .map_or(0, |p| p + 1);
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = items.len() > start + page.len();
    Ok(json!({"object": "list", "data": page,
        "first_id": page.first().map(|i| i["id"].clone()), "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": has_more}))
}

/// Converse stream events → Responses events; the finished response is
/// stored before `response.completed` goes out.
struct Sse {
    stream: Stream,
    keep: Option<Keep>,
    region: String,
    pending: Option<futures_util::future::BoxFuture<'static, ()>>,
    /// The upstream speaks the Responses API itself (its events pass on).
    passthrough: bool,
}

impl Sse {
    fn chunks(&mut self, events: &[Value]) -> Vec<Bytes> {
        if let Some(done) = self.stream.finished()
            && done["status"] != "failed"
        {
            let done = done.clone();
            self.keep_once(done);
        }
        events.iter().map(event_bytes).collect()
    }

    /// Stores `response` before what follows goes out (once).
    fn keep_once(&mut self, response: Value) {
        if let Some(keep) = self.keep.take() {
            let region = self.region.clone();
            self.pending = Some(Box::pin(keep.store(region, response)));
        }
    }

    /// An event of Bedrock's OpenAI-compatible endpoint, as it came; the
    /// response that ends the stream is stored first.
    fn passed(&mut self, ev: &Event) -> Result<Vec<Bytes>, BedrockError> {
        self.passthrough = true;
        if matches!(ev.name(), "response.completed" | "response.incomplete") {
            let v = crate::sse::payload(ev)?;
            let response = v["response"].clone();
            self.keep_once(response);
        }
        Ok(vec![crate::sse::data_line(ev)?])
    }

    fn one(&mut self, events: &[Value]) -> Bytes {
        Bytes::from(self.chunks(events).concat())
    }
}

fn event_bytes(e: &Value) -> Bytes {
    let kind = e["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {kind}\ndata: {e}\n\n"))
}

impl crate::sse::Translate for Sse {
    fn event(&mut self, ev: &Event) -> Result<Vec<Bytes>, BedrockError> {
        match ev.vocabulary() {
            Vocabulary::OpenAi => return self.passed(ev),
            Vocabulary::Converse => {}
            _ => return Ok(Vec::new()),
        }
        let payload = crate::sse::payload(ev)?;
        let events = self.stream.event(ev.name(), &payload);
        Ok(self.chunks(&events))
    }

    fn exception(&mut self, member: &str, message: &str) -> Bytes {
        let events = self.stream.fail(member, message);
        self.one(&events)
    }

    fn broken(&mut self, e: &BedrockError) -> Bytes {
        let events = self.stream.fail(e.kind.name(), &e.message);
        self.one(&events)
    }

    fn done(&mut self) -> Option<Bytes> {
        if self.passthrough {
            return None;
        }
        let events = self.stream.finish();
        (!events.is_empty()).then(|| self.one(&events))
    }

    fn hold(&mut self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        self.pending.take()
    }
}
