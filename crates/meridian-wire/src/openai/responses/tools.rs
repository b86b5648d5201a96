//! A Responses request's tools for Converse: function tools, and those a
//! `namespace` groups (flattened to `namespace__name`, and named back in
//! the answer); built-in tools are left out and named; `tool_choice`.

use serde_json::{Value, json};

use super::input::str_field;
use crate::openai::OpenAiError;
use crate::openai::inbound::tool_spec;

/// One function tool as the model sees it, and as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolName {
    /// The name in Converse (`namespace__name` for a namespaced tool).
    pub flat: String,
    /// The name the client gave.
    pub name: String,
    /// Its namespace, if it had one.
    pub namespace: Option<String>,
}

/// The tools of a request, flattened for Converse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    /// Every function tool.
    pub names: Vec<ToolName>,
    /// Built-in tools left out (no Bedrock model runs them through Converse).
    pub dropped: Vec<String>,
}

impl Tools {
    /// The client's name and namespace for a Converse tool name.
    pub fn unflatten<'a>(&'a self, flat: &'a str) -> (&'a str, Option<&'a str>) {
        self.names
            .iter()
            .find(|t| t.flat == flat)
            .map_or((flat, None), |t| (t.name.as_str(), t.namespace.as_deref()))
    }

    pub(super) fn flatten(&self, name: &str, namespace: Option<&str>) -> String {
        match namespace {
            None => name.to_string(),
            Some(ns) => self
                .names
                .iter()
                .find(|t| t.name == name && t.namespace.as_deref() == Some(ns))
                .map_or_else(|| flat_name(ns, name), |t| t.flat.clone()),
        }
    }
}

fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}__{name}")
}

/// Function tools, flattened; built-in tools are left out and named.
pub(super) fn tools(list: &[Value]) -> Result<Tools, OpenAiError> {
    let mut out = Tools::default();
    for (i, t) in list.iter().enumerate() {
        match t["type"].as_str() {
            Some("function") => out.names.push(ToolName {
                flat: str_field(t, "name", &format!("tools[{i}]"))?.to_string(),
                name: t["name"].as_str().unwrap_or_default().to_string(),
                namespace: None,
            }),
            Some("namespace") => {
                let ns = str_field(t, "name", &format!("tools[{i}]"))?;
                for (j, f) in t["tools"].as_array().into_iter().flatten().enumerate() {
                    if f["type"] != "function" {
                        out.dropped
                            .push(format!("{ns}.{}", f["type"].as_str().unwrap_or("?")));
                        continue;
                    }
                    let name = str_field(f, "name", &format!("tools[{i}].tools[{j}]"))?;
                    out.names.push(ToolName {
                        flat: flat_name(ns, name),
                        name: name.to_string(),
                        namespace: Some(ns.to_string()),
                    });
                }
            }
            Some(other) => out.dropped.push(other.to_string()),
            None => {
                return Err(OpenAiError::invalid(
                    &format!("tools[{i}].type"),
                    "each tool needs a 'type'",
                ));
            }
        }
    }
    Ok(out)
}

/// The function definitions of `list` (top level and in namespaces).
fn functions(list: &[Value]) -> impl Iterator<Item = &Value> {
    list.iter().flat_map(|t| match t["type"].as_str() {
        Some("function") => vec![t],
        Some("namespace") => t["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["type"] == "function")
            .collect(),
        _ => Vec::new(),
    })
}

pub(super) fn tool_config(
    tools: &Tools,
    list: &[Value],
    choice: Option<&Value>,
) -> Result<Option<Value>, OpenAiError> {
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "none" => return Ok(None),
        Some(v) if v["type"] == "function" => {
            let name = v["name"].as_str().unwrap_or_default();
            let flat = tools.flatten(name, v["namespace"].as_str());
            if !tools.names.iter().any(|t| t.flat == flat) {
                return Err(OpenAiError::invalid(
                    "tool_choice",
                    format!("tool_choice names '{name}', which is not among the function tools"),
                ));
            }
            Some(json!({"tool": {"name": flat}}))
        }
        Some(v) if v["type"] == "allowed_tools" => Some(match v["mode"].as_str() {
            Some("required") => json!({"any": {}}),
            _ => json!({"auto": {}}),
        }),
        Some(v) => {
            let kind = v["type"].as_str().unwrap_or("?");
            return Err(OpenAiError::invalid(
                "tool_choice",
                format!(
                    "tool_choice requires the built-in tool '{kind}', which Bedrock does not run for this model"
                ),
            ));
        }
    };
    if tools.names.is_empty() {
        return Ok(None);
    }
    let specs: Vec<Value> = functions(list)
        .zip(&tools.names)
        .map(|(f, n)| tool_spec(&json!(n.flat), f))
        .collect();
    let mut tc = json!({"tools": specs});
    if let Some(c) = choice {
        tc["toolChoice"] = c;
    }
    Ok(Some(tc))
}
