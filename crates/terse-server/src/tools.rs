//! Tool calling on the chat endpoint, as vLLM's and llama.cpp's servers serve it for
//! templates in the Hermes / Qwen 2.5 style: the request's `tools` go to the chat
//! template, which writes their signatures into the prompt; earlier calls and their
//! results go in as messages the template renders (an assistant turn's `tool_calls`,
//! `tool` turns); and the answer's `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
//! blocks come back as `tool_calls` with `finish_reason: "tool_calls"`.
//!
//! Small models often drop the tags and answer with the bare call: an answer that is
//! as a whole one JSON call (or a list of them, or one in a ```json fence) naming an
//! offered tool is read as calls too, as llama.cpp's parser reads such answers; Qwen
//! 2.5 Coder 0.5B answers a weather question with `{"name": "get_weather", …}` alone.
//!
//! With `tool_choice` "auto" (the default) decoding is free: the model may call no
//! tool, and a block that is not a call (not JSON, no name) stays in the content as
//! written, as vLLM's Hermes parser leaves it. "none" leaves the tools out of the
//! prompt. "required" and a named function constrain decoding to one call in the
//! Hermes form, `<tool_call>\n{"name": "NAME", "arguments": {…}}\n</tool_call>`, with
//! NAME one of the offered tools (or the named one). The arguments follow the tool's
//! `parameters` schema where one tool is possible and the schema is one terse's grammar
//! enforces (see `terse_reason::json_schema`); otherwise they are any JSON object.

use crate::error::ApiError;
use serde_json::{json, Map, Value};
use terse_reason::{json_schema, Grammar, JsonType, Segment};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// A call the model wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as a JSON text, as the OpenAI API carries them.
    pub arguments: String,
}

impl ToolCall {
    /// The API's shape of call `index`, with its id.
    pub fn to_json(&self, id: &str) -> Value {
        json!({"id": id, "type": "function",
               "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// Splits an answer into its content (the text outside the calls, trimmed) and the
/// calls it makes, in order; `offered` names the tools, for an untagged answer.
pub fn parse(text: &str, offered: &[&str]) -> (String, Vec<ToolCall>) {
    let (content, calls) = tagged(text);
    if calls.is_empty() {
        if let Some(calls) = bare(&content, offered) {
            return (String::new(), calls);
        }
    }
    (content, calls)
}

/// An answer that is nothing but a call, a list of calls, or one of those in a code
/// fence, each naming an offered tool.
fn bare(text: &str, offered: &[&str]) -> Option<Vec<ToolCall>> {
    let body = text.trim();
    let body = match body.strip_prefix("```") {
        Some(fenced) => fenced
            .trim_start_matches("json")
            .trim_end()
            .strip_suffix("```")?,
        None => body,
    };
    let value: Value = serde_json::from_str(body.trim()).ok()?;
    let items = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let calls: Vec<ToolCall> = items
        .iter()
        .map(|item| call(&item.to_string()))
        .collect::<Option<_>>()?;
    (!calls.is_empty() && calls.iter().all(|c| offered.contains(&c.name.as_str()))).then_some(calls)
}

/// The `<tool_call>` blocks of an answer and the text around them.
fn tagged(text: &str) -> (String, Vec<ToolCall>) {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        // A call cut off at the end (the length cap) has no closing tag.
        let (inner, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        match call(inner) {
            Some(c) => {
                content.push_str(&rest[..start]);
                calls.push(c);
            }
            None => content.push_str(&rest[..rest.len() - next.len()]),
        }
        rest = next;
    }
    content.push_str(rest);
    (content.trim().to_string(), calls)
}

/// `{"name": "...", "arguments": {...}}` (arguments an object or a JSON text).
fn call(inner: &str) -> Option<ToolCall> {
    let value: Value = serde_json::from_str(inner.trim()).ok()?;
    value.as_object()?;
    let name = value.get("name")?.as_str()?.to_string();
    let arguments = match value.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Some(ToolCall { name, arguments })
}

/// The names of `tools` (checked by [`offered`]).
pub fn names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect()
}

/// What `tools` and `tool_choice` ask for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Offered {
    /// The tools the prompt carries (`None` when there are none or `tool_choice` is
    /// "none").
    pub tools: Option<Vec<Value>>,
    /// The call the answer must be ("required" or a named function).
    pub forced: Option<Grammar>,
}

/// Most tools "required" chooses among.
const MAX_REQUIRED_TOOLS: usize = 64;

/// `tools` and `tool_choice`, checked.
pub fn offered(tools: Option<&Value>, tool_choice: Option<&Value>) -> Result<Offered, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(other) => {
            return Err(ApiError::invalid_param(
                "tools",
                format!("tools must be a list of functions, not {other}"),
            ))
        }
    };
    let mut names = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str);
        let name = tool
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        match name {
            Some(name) if kind == Some("function") && !name.is_empty() => names.push(name),
            _ => {
                return Err(ApiError::invalid_param(
                    &format!("tools[{i}]"),
                    format!(
                        "a tool must be {{\"type\": \"function\", \"function\": {{\"name\": …}}}}, not {tool}"
                    ),
                ))
            }
        }
    }
    let no_tools = || {
        ApiError::invalid_param(
            "tool_choice",
            "tool_choice asks for a call, but the request offers no tools",
        )
    };
    let forced = match tool_choice {
        None | Some(Value::Null) => None,
        Some(Value::String(choice)) if choice == "auto" => None,
        Some(Value::String(choice)) if choice == "none" => {
            return Ok(Offered::default());
        }
        Some(Value::String(choice)) if choice == "required" => {
            if names.is_empty() {
                return Err(no_tools());
            }
            if names.len() > MAX_REQUIRED_TOOLS {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!(
                        "tool_choice \"required\" chooses among at most {MAX_REQUIRED_TOOLS} tools, \
                         the request offers {}",
                        names.len()
                    ),
                ));
            }
            let only_parameters = match tools.as_slice() {
                [tool] => parameters(tool),
                _ => None,
            };
            Some(forced_call(&names, only_parameters)?)
        }
        Some(choice @ Value::Object(_))
            if choice.get("type").and_then(Value::as_str) == Some("function") =>
        {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !names.contains(&name) {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!(
                        "tool_choice names the function '{name}', which is not among the offered \
                         tools ({})",
                        names.join(", ")
                    ),
                ));
            }
            let tool = tools
                .iter()
                .find(|t| t["function"]["name"].as_str() == Some(name));
            Some(forced_call(&[name], tool.and_then(parameters))?)
        }
        Some(other) => {
            return Err(ApiError::invalid_param(
                "tool_choice",
                format!(
                    "tool_choice must be \"auto\", \"none\", \"required\" or \
                     {{\"type\": \"function\", \"function\": {{\"name\": …}}}}, not {other}"
                ),
            ))
        }
    };
    Ok(Offered {
        tools: (!tools.is_empty()).then_some(tools),
        forced,
    })
}

/// A tool's `parameters` schema.
fn parameters(tool: &Value) -> Option<&Value> {
    tool.get("function")?.get("parameters")
}

/// One Hermes-form call to one of `names`, its arguments held to `parameters` when
/// the grammar can enforce that schema.
fn forced_call(names: &[&str], parameters: Option<&Value>) -> Result<Grammar, ApiError> {
    // Each name as it ends inside a JSON string, closing quote included: prefix-free.
    let mut quoted: Vec<String> = names
        .iter()
        .map(|n| json!(n).to_string()[1..].to_string())
        .collect();
    quoted.sort();
    quoted.dedup();
    let arguments = parameters
        .and_then(|schema| json_schema::schema_segments(schema).ok())
        .filter(|segments| matches!(segments.first(), Some(Segment::Text(t)) if t.starts_with('{')))
        .unwrap_or_else(|| vec![Segment::Json(JsonType::OBJECT)]);
    let mut segments = vec![
        Segment::Text(format!("{OPEN}\n{{\"name\": \"")),
        Segment::OneOf(quoted),
        Segment::Text(", \"arguments\": ".into()),
    ];
    segments.extend(arguments);
    segments.push(Segment::Text(format!("}}\n{CLOSE}")));
    Grammar::new(segments).map_err(|e| ApiError::invalid_param("tool_choice", e.to_string()))
}

/// An assistant turn's `tool_calls` in the shape templates read: each call's
/// `function.arguments` parsed from its JSON text into an object (as vLLM does before
/// rendering). `param` names the field in errors.
pub fn history_calls(param: &str, calls: &Value) -> Result<Vec<Value>, ApiError> {
    let Value::Array(calls) = calls else {
        return Err(ApiError::invalid_param(
            param,
            format!("tool_calls must be a list, not {calls}"),
        ));
    };
    calls
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let param = format!("{param}[{j}]");
            let function = c
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        &param,
                        format!("a tool call must hold a function object, not {c}"),
                    )
                })?;
            let mut function: Map<String, Value> = function.clone();
            if let Some(Value::String(text)) = function.get("arguments") {
                let parsed: Value = serde_json::from_str(text).map_err(|e| {
                    ApiError::invalid_param(
                        &format!("{param}.function.arguments"),
                        format!("arguments must be a JSON text: {e}"),
                    )
                })?;
                function.insert("arguments".into(), parsed);
            }
            let mut call = c.clone();
            call["function"] = Value::Object(function);
            Ok(call)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_parsed_out_of_the_answer_and_the_rest_is_content() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\"}\n</tool_call>";
        let (content, calls) = parse(text, &[]);
        assert_eq!(content, "Let me check.");
        assert_eq!(
            calls,
            vec![
                ToolCall {
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into()
                },
                ToolCall {
                    name: "now".into(),
                    arguments: "{}".into()
                },
            ]
        );
        assert_eq!(
            calls[0].to_json("call_1")["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
    }

    #[test]
    fn a_block_that_is_not_a_call_stays_in_the_content() {
        let text = "<tool_call>\nnot json\n</tool_call> and 18";
        assert_eq!(parse(text, &["f"]), (text.to_string(), Vec::new()));
        let (content, calls) = parse("plain answer: 18", &["f"]);
        assert_eq!((content.as_str(), calls.len()), ("plain answer: 18", 0));
        // A call cut off by the length cap is not a call.
        let cut = "<tool_call>\n{\"name\": \"f\", \"argu";
        assert_eq!(parse(cut, &["f"]), (cut.to_string(), Vec::new()));
        // One complete call before the cut one is kept.
        let (_, calls) = parse(
            "<tool_call>{\"name\": \"f\"}</tool_call><tool_call>{\"na",
            &["f"],
        );
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn an_untagged_answer_is_a_call_only_when_it_is_one_whole_and_names_an_offered_tool() {
        let bare = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
        let (content, calls) = parse(bare, &["get_weather"]);
        assert_eq!(
            (content.as_str(), calls[0].name.as_str()),
            ("", "get_weather")
        );
        assert_eq!(calls[0].arguments, "{\"city\":\"Paris\"}");
        let fenced = format!("```json\n[{bare}, {{\"name\": \"get_weather\"}}]\n```");
        assert_eq!(parse(&fenced, &["get_weather"]).1.len(), 2);
        // Not offered, or not the whole answer: content.
        assert_eq!(parse(bare, &["search"]).1, Vec::new());
        let prose = format!("Here is JSON: {bare}");
        assert_eq!(parse(&prose, &["get_weather"]), (prose.clone(), Vec::new()));
        assert_eq!(
            parse("{\"city\": \"Paris\"}", &["get_weather"]).1,
            Vec::new()
        );
    }

    #[test]
    fn tools_and_tool_choice_are_checked_and_none_leaves_them_out() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        let carried = |choice: Option<Value>| {
            offered(Some(&tools), choice.as_ref())
                .unwrap()
                .tools
                .map(|t| t.len())
        };
        assert_eq!(carried(None), Some(1));
        assert_eq!(carried(Some(json!("auto"))), Some(1));
        assert_eq!(carried(Some(json!("none"))), None);
        assert_eq!(offered(None, None).unwrap(), Offered::default());
        assert_eq!(offered(Some(&tools), None).unwrap().forced, None);
        for (bad, param) in [
            (json!({"type": "function"}), "tools"),
            (json!([{"type": "function", "function": {}}]), "tools[0]"),
            (json!([{"type": "code_interpreter"}]), "tools[0]"),
        ] {
            let err = offered(Some(&bad), None).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{bad}");
        }
        for bad in [
            json!("sometimes"),
            json!({"type": "function", "function": {"name": "g"}}),
            json!({"type": "retrieval"}),
        ] {
            let err = offered(Some(&tools), Some(&bad)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("tool_choice"), "{bad}");
        }
        let err = offered(None, Some(&json!("required"))).unwrap_err();
        assert!(err.message.contains("no tools"), "{}", err.message);
    }

    #[test]
    fn a_required_or_named_tool_choice_forces_one_hermes_call_to_an_offered_tool() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}},
                           {"type": "function", "function": {"name": "get_time"}}]);
        let grammar = |choice: Value| {
            offered(Some(&tools), Some(&choice))
                .unwrap()
                .forced
                .expect("a forced call")
        };
        let complete = |g: &Grammar, text: &str| {
            g.walk(g.start(), text.as_bytes())
                .is_some_and(|c| g.is_complete(c))
        };
        let call = |name: &str| {
            format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {{\"city\": \"Paris\"}}}}\n</tool_call>")
        };
        let required = grammar(json!("required"));
        assert!(complete(&required, &call("get_weather")));
        assert!(complete(&required, &call("get_time")));
        assert!(!complete(&required, &call("get_date")));
        let named = grammar(json!({"type": "function", "function": {"name": "get_time"}}));
        assert!(complete(&named, &call("get_time")));
        assert!(!complete(&named, &call("get_weather")));
        // One possible tool: its arguments follow its parameters schema.
        let typed = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"]}}}]);
        let held = offered(Some(&typed), Some(&json!("required")))
            .unwrap()
            .forced
            .expect("a forced call");
        let with = |arguments: &str| {
            format!("<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {arguments}}}\n</tool_call>")
        };
        assert!(complete(&held, &with(r#"{"city": "Paris", "unit": "C"}"#)));
        assert!(!complete(&held, &with(r#"{"city": "Paris"}"#)));
        assert!(!complete(&held, &with(r#"{"town": "Paris", "unit": "C"}"#)));
        // What the grammar lets through is what the parser reads back.
        let (content, calls) = parse(&call("get_time"), &["get_weather", "get_time"]);
        assert_eq!(content, "");
        assert_eq!(calls[0].name, "get_time");
    }

    #[test]
    fn history_calls_get_their_arguments_as_objects() {
        let calls = json!([{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"x\": 2}"}}]);
        let parsed = history_calls("messages[1].tool_calls", &calls).unwrap();
        assert_eq!(parsed[0]["function"]["arguments"], json!({"x": 2}));
        assert_eq!(parsed[0]["id"], "call_1");
        let bad = json!([{"function": {"name": "f", "arguments": "{x"}}]);
        let err = history_calls("messages[1].tool_calls", &bad).unwrap_err();
        assert_eq!(
            err.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
    }
}
