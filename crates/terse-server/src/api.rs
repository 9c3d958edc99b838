//! The OpenAI request bodies of `/v1/chat/completions` and `/v1/completions`, and the one
//! place they map onto terse's [`CompletionRequest`].
//!
//! Unknown fields are accepted and ignored (as OpenAI's own SDKs send new ones first);
//! a known field with a bad type or value is a 400 that names it.

use crate::error::ApiError;
use crate::strategy::{Presets, StrategyAsk};
use serde::Deserialize;
use serde_json::{Map, Value};
use terse_engine::{ChatMessage, SamplerConfig};
use terse_reason::{CompletionRequest, Grammar, Prompt, StrategySpec};

/// Most alternatives per token `top_logprobs` (or `logprobs` on completions) may ask.
pub const MAX_TOP_LOGPROBS: u64 = 20;
/// Most choices one request may ask (`n`).
pub const MAX_CHOICES: u64 = 16;
/// Most stop strings.
pub const MAX_STOP: usize = 16;

/// Which endpoint a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
        }
    }
}

/// The fields either endpoint reads; the rest are ignored.
#[derive(Debug, Default, Deserialize)]
struct Body {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    prompt: Option<Value>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    n: Option<u64>,
    stop: Option<Value>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    logprobs: Option<Value>,
    top_logprobs: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    terse: Option<Map<String, Value>>,
    reasoning_effort: Option<String>,
    thinking_token_budget: Option<u64>,
    thinking_budget_tokens: Option<u64>,
    reasoning_budget_tokens: Option<u64>,
    reasoning: Option<ReasoningField>,
    logit_bias: Option<Map<String, Value>>,
    response_format: Option<Value>,
    /// vLLM's and llama.cpp's: more variables for the chat template.
    chat_template_kwargs: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// OpenRouter's `reasoning: {"max_tokens": N, "effort": "low"}`.
#[derive(Debug, Default, Deserialize)]
struct ReasoningField {
    max_tokens: Option<u64>,
    effort: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// A request, mapped: what to run, how many times and how to answer.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoint: Endpoint,
    pub request: CompletionRequest,
    /// Choices to run (`n`).
    pub n: usize,
    /// The seed given; choice `i` runs with `seed + i`. Without one each choice gets a
    /// fresh random seed.
    pub seed: Option<u64>,
    pub stream: bool,
    pub include_usage: bool,
    /// The model name to echo back.
    pub model: String,
    /// The names of the tools offered (in the template's `tools`): the answer's
    /// calls to them are parsed out of it. Empty: none offered.
    pub tools: Vec<String>,
}

impl Plan {
    /// The request of choice `index`, with its own seed.
    pub fn choice(&self, index: usize) -> CompletionRequest {
        let mut request = self.request.clone();
        request.sampling.seed = match self.seed {
            Some(seed) => seed.wrapping_add(index as u64),
            None => random_u64(),
        };
        request
    }
}

/// A random number from the standard library's per-process random hasher keys.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Server-side defaults that a request's fields override.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub sampling: SamplerConfig,
    pub max_tokens: usize,
    /// The strategy of a request that names none.
    pub strategy: StrategySpec,
    /// Named strategies and effort levels (`--config`).
    pub presets: Presets,
}

/// Parses a body sent to `endpoint` and maps it onto a [`Plan`]; `served` is the model
/// name this server answers to.
pub fn plan(
    endpoint: Endpoint,
    bytes: &[u8],
    served: &str,
    defaults: &Defaults,
) -> Result<Plan, ApiError> {
    let body: Body = serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::invalid(format!("malformed JSON body: {e}"))
            }
            Category::Data => ApiError::invalid(format!("bad request body: {e}")),
        }
    })?;

    let model = body.model.clone().unwrap_or_else(|| served.to_string());
    let model_suffix = model_suffix(&model, served)?;

    let prompt = match endpoint {
        Endpoint::Chat => Prompt::Chat(messages(body.messages.as_deref())?),
        Endpoint::Completions => Prompt::Text(text_prompt(body.prompt.as_ref())?),
    };

    let mut sampling = defaults.sampling.clone();
    if let Some(t) = body.temperature {
        check("temperature", t, (0.0..=2.0).contains(&t), "0 to 2")?;
        sampling.temperature = t as f32;
    }
    if let Some(p) = body.top_p {
        check("top_p", p, p > 0.0 && p <= 1.0, "in (0, 1]")?;
        sampling.top_p = p as f32;
    }
    if let Some(k) = body.top_k {
        // vLLM's -1 (and 0) turn top-k off.
        check("top_k", k as f64, k >= -1, "-1 (off) or more")?;
        sampling.top_k = k.max(0) as usize;
    }
    if let Some(p) = body.min_p {
        check("min_p", p, (0.0..=1.0).contains(&p), "0 to 1")?;
        sampling.min_p = p as f32;
    }
    if let Some(p) = body.presence_penalty {
        check("presence_penalty", p, (-2.0..=2.0).contains(&p), "-2 to 2")?;
        sampling.presence_penalty = p as f32;
    }
    if let Some(p) = body.frequency_penalty {
        check("frequency_penalty", p, (-2.0..=2.0).contains(&p), "-2 to 2")?;
        sampling.frequency_penalty = p as f32;
    }
    if let Some(p) = body.repetition_penalty {
        check("repetition_penalty", p, p > 0.0 && p.is_finite(), "above 0")?;
        sampling.repeat_penalty = p as f32;
    }

    if let Some(bias) = &body.logit_bias {
        sampling.logit_bias = logit_bias(bias)?;
    }
    let json_response = response_format(body.response_format.as_ref())?;

    let max_tokens = match body.max_completion_tokens.or(body.max_tokens) {
        Some(0) => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                "max_tokens must be at least 1",
            ))
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => defaults.max_tokens,
    };
    let n = body.n.unwrap_or(1);
    if n == 0 || n > MAX_CHOICES {
        return Err(ApiError::invalid_param(
            "n",
            format!("n must be 1 to {MAX_CHOICES}, got {n}"),
        ));
    }

    let stop = stop_strings(body.stop.as_ref())?;
    let mut template_kwargs = match &body.chat_template_kwargs {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(kwargs)) => kwargs.clone(),
        Some(other) => {
            return Err(ApiError::invalid_param(
                "chat_template_kwargs",
                format!("chat_template_kwargs must be an object, not {other}"),
            ))
        }
    };
    let enable_thinking = match template_kwargs.get("enable_thinking") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(on)) => Some(*on),
        Some(other) => {
            return Err(ApiError::invalid_param(
                "chat_template_kwargs.enable_thinking",
                format!("chat_template_kwargs.enable_thinking must be true or false, not {other}"),
            ))
        }
    };
    let offered = match endpoint {
        Endpoint::Chat => crate::tools::offered(body.tools.as_ref(), body.tool_choice.as_ref())?,
        Endpoint::Completions if body.tools.is_some() => {
            return Err(ApiError::invalid_param(
                "tools",
                "tools are offered on /v1/chat/completions, not /v1/completions",
            ))
        }
        Endpoint::Completions => crate::tools::Offered::default(),
    };
    let tools = offered.tools;
    if let Some(tools) = &tools {
        template_kwargs.insert("tools".into(), Value::Array(tools.clone()));
    }
    let constraint = match (offered.forced, json_response) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_param(
                "response_format",
                "a JSON response_format and a tool_choice that forces a call cannot both \
                 decide the answer",
            ))
        }
        (call, format) => call.or(format),
    };
    let (logprobs, top_logprobs) = logprobs(endpoint, body.logprobs.as_ref(), body.top_logprobs)?;

    let reasoning_budget = [
        ("thinking_token_budget", body.thinking_token_budget),
        ("thinking_budget_tokens", body.thinking_budget_tokens),
        ("reasoning_budget_tokens", body.reasoning_budget_tokens),
        (
            "reasoning.max_tokens",
            body.reasoning.as_ref().and_then(|r| r.max_tokens),
        ),
        // No thinking: the template is told (one that reads it renders a closed
        // think section), and for one that does not, the think section is closed
        // after its first token.
        (
            "chat_template_kwargs.enable_thinking",
            enable_thinking.and_then(|on| (!on).then_some(1)),
        ),
    ]
    .into_iter()
    .find_map(|(field, v)| v.map(|v| (field, v)));
    let effort = body
        .reasoning_effort
        .as_deref()
        .or(body.reasoning.as_ref().and_then(|r| r.effort.as_deref()));
    let strategy = StrategyAsk {
        extension: body.terse.as_ref(),
        model_suffix,
        reasoning_effort: effort,
        reasoning_budget,
        default: Some(&defaults.strategy),
        presets: Some(&defaults.presets),
    }
    .resolve()?;
    let request = CompletionRequest {
        prompt,
        sampling,
        max_tokens,
        stop,
        strategy,
        logprobs,
        top_logprobs,
        template_kwargs,
        constraint,
    };
    request.check_constraint()?;

    Ok(Plan {
        endpoint,
        request,
        n: n as usize,
        seed: body.seed.map(|s| s as u64),
        stream: body.stream.unwrap_or(false),
        include_usage: body
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        model,
        tools: tools
            .as_deref()
            .map(crate::tools::names)
            .unwrap_or_default(),
    })
}

/// The strategy chain after `SERVED+`, or a 404 for a model this server does not serve.
fn model_suffix<'a>(model: &'a str, served: &str) -> Result<Option<&'a str>, ApiError> {
    if model.is_empty() || model == served {
        return Ok(None);
    }
    match model.strip_prefix(served).and_then(|r| r.strip_prefix('+')) {
        Some(chain) if !chain.is_empty() => Ok(Some(chain)),
        _ => Err(ApiError::unknown_model(model, served)),
    }
}

fn check(param: &str, value: f64, ok: bool, range: &str) -> Result<(), ApiError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            param,
            format!("{param} must be {range}, got {value}"),
        ))
    }
}

/// The conversation: string content, or a list of text parts joined by newlines.
fn messages(messages: Option<&[Message]>) -> Result<Vec<ChatMessage>, ApiError> {
    let messages = messages.ok_or_else(|| {
        ApiError::invalid_param("messages", "messages is required: a list of messages")
    })?;
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must hold at least one message",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                other => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].role"),
                        format!(
                            "role '{other}' is not one of system, developer, user, assistant, tool"
                        ),
                    ))
                }
            };
            let content = match &m.content {
                Value::String(s) => s.clone(),
                // An assistant turn that only called tools has no content.
                Value::Null if role == "assistant" => String::new(),
                Value::Array(parts) => text_parts(i, parts)?,
                other => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].content"),
                        format!("content must be a string or a list of text parts, not {other}"),
                    ))
                }
            };
            let mut message = ChatMessage::new(role, content);
            match (&m.tool_calls, role) {
                (None | Some(Value::Null), _) => {}
                (Some(calls), "assistant") => {
                    message.tool_calls =
                        crate::tools::history_calls(&format!("messages[{i}].tool_calls"), calls)?;
                }
                (Some(_), _) => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].tool_calls"),
                        "only an assistant message carries tool_calls",
                    ))
                }
            }
            if role == "tool" {
                message.tool_call_id = m.tool_call_id.clone();
            }
            Ok(message)
        })
        .collect()
}

fn text_parts(i: usize, parts: &[Value]) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match (
            part.get("type").and_then(Value::as_str),
            part.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(text)) => texts.push(text),
            (Some(kind), _) if kind != "text" => {
                return Err(ApiError::invalid_param(
                    &param,
                    format!("content parts of type '{kind}' are not supported; only 'text'"),
                ))
            }
            _ => {
                return Err(ApiError::invalid_param(
                    &param,
                    format!(
                    "a content part must be {{\"type\": \"text\", \"text\": \"…\"}}, not {part}"
                ),
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// `/v1/completions`' prompt: a string, or a list holding one string.
fn text_prompt(prompt: Option<&Value>) -> Result<String, ApiError> {
    match prompt {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => Ok(s.clone()),
            _ => Err(ApiError::invalid_param(
                "prompt",
                "prompt must be a string (or a list of one string); batches and token arrays \
                 are not supported",
            )),
        },
        None | Some(Value::Null) => Err(ApiError::invalid_param("prompt", "prompt is required")),
        Some(other) => Err(ApiError::invalid_param(
            "prompt",
            format!("prompt must be a string, not {other}"),
        )),
    }
}

/// `{"token id": bias}`, each bias in [-100, 100]; -100 bans the token, as OpenAI's
/// does in effect. Token ids beyond the vocabulary are checked against the model later.
fn logit_bias(bias: &Map<String, Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    bias.iter()
        .map(|(token, value)| {
            let id: u32 = token.parse().map_err(|_| {
                ApiError::invalid_param(
                    "logit_bias",
                    format!("logit_bias keys are token ids, not '{token}'"),
                )
            })?;
            match value.as_f64() {
                Some(b) if (-100.0..=100.0).contains(&b) => Ok((
                    id,
                    if b <= -100.0 {
                        f32::NEG_INFINITY
                    } else {
                        b as f32
                    },
                )),
                _ => Err(ApiError::invalid_param(
                    "logit_bias",
                    format!("the bias of token {token} must be -100 to 100, not {value}"),
                )),
            }
        })
        .collect()
}

/// `response_format`: `text` (no grammar), `json_object` (decoding constrained to one
/// JSON object) or `json_schema` (to an instance of `json_schema.schema`; a schema
/// the grammar cannot enforce is a 400 naming the keyword, never an answer that
/// ignores it).
fn response_format(format: Option<&Value>) -> Result<Option<Grammar>, ApiError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Grammar::json_object())),
        Some("json_schema") => {
            let param = "response_format.json_schema.schema";
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        param,
                        "response_format json_schema needs {\"json_schema\": {\"name\": …, \
                         \"schema\": {…}}}",
                    )
                })?;
            Grammar::from_json_schema(schema)
                .map(Some)
                .map_err(|e| ApiError::invalid_param(param, e.to_string()))
        }
        Some(other) => Err(ApiError::invalid_param(
            "response_format",
            format!(
                "response_format '{other}' is not supported: \"text\", \"json_object\" or \
                 \"json_schema\""
            ),
        )),
        None => Err(ApiError::invalid_param(
            "response_format",
            "response_format must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", …}",
        )),
    }
}

fn stop_strings(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            "stop",
            format!("stop must be a string or a list of at most {MAX_STOP} non-empty strings"),
        )
    };
    let stop: Vec<String> = match stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(stop)
}

/// Chat's `logprobs: bool` + `top_logprobs: N`, or completions' `logprobs: N`.
fn logprobs(
    endpoint: Endpoint,
    logprobs: Option<&Value>,
    top_logprobs: Option<u64>,
) -> Result<(bool, usize), ApiError> {
    let (on, top, param) = match (endpoint, logprobs) {
        (_, None | Some(Value::Null)) => (false, top_logprobs.unwrap_or(0), "top_logprobs"),
        (Endpoint::Chat, Some(Value::Bool(b))) => (*b, top_logprobs.unwrap_or(0), "top_logprobs"),
        (Endpoint::Completions, Some(Value::Number(n))) => match n.as_u64() {
            Some(k) => (true, k, "logprobs"),
            None => {
                return Err(ApiError::invalid_param(
                    "logprobs",
                    format!("logprobs must be 0 to {MAX_TOP_LOGPROBS}, got {n}"),
                ))
            }
        },
        (Endpoint::Chat, Some(other)) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("logprobs must be true or false, not {other}"),
            ))
        }
        (Endpoint::Completions, Some(other)) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("logprobs must be a number of alternatives, not {other}"),
            ))
        }
    };
    if top > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be 0 to {MAX_TOP_LOGPROBS}, got {top}"),
        ));
    }
    if top > 0 && !on {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    Ok((on, top as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            sampling: SamplerConfig::default(),
            max_tokens: 64,
            strategy: StrategySpec::none(),
            presets: Presets::default(),
        }
    }

    fn chat(body: &str) -> Result<Plan, ApiError> {
        plan(Endpoint::Chat, body.as_bytes(), "m", &defaults())
    }

    #[test]
    fn malformed_messages_are_400s() {
        for body in [
            r#"{"messages": null}"#,
            r#"{"messages": "hi"}"#,
            r#"{"messages": [123]}"#,
            r#"{"messages": [{}]}"#,
            r#"{"messages": []}"#,
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
            r#"{"messages": [{"role": "user"}]}"#,
            r#"{"messages": [{"role": "user", "content": "x"}"#,
        ] {
            let err = chat(body).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn fields_map_onto_the_one_request_type() {
        let p = chat(
            r#"{"model": "m", "messages": [{"role": "developer", "content": "be short"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                "max_completion_tokens": 9, "temperature": 0, "top_k": -1, "stop": "x",
                "seed": 5, "n": 2, "logprobs": true, "top_logprobs": 3, "stream": true,
                "stream_options": {"include_usage": true}, "some_future_field": {"a": 1}}"#,
        )
        .unwrap();
        let Prompt::Chat(m) = &p.request.prompt else {
            panic!("a chat prompt")
        };
        assert_eq!(m[0].role, "system");
        assert_eq!(m[1].content, "a\nb");
        assert_eq!(p.request.max_tokens, 9);
        assert_eq!(p.request.sampling.temperature, 0.0);
        assert_eq!(p.request.sampling.top_k, 0);
        assert_eq!(p.request.stop, vec!["x".to_string()]);
        assert_eq!((p.request.logprobs, p.request.top_logprobs), (true, 3));
        assert_eq!(p.choice(1).sampling.seed, 6);
        assert!(p.stream && p.include_usage && p.n == 2);
    }

    #[test]
    fn top_logprobs_above_twenty_is_a_400() {
        let err = chat(r#"{"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}"#)
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("top_logprobs"));
    }

    #[test]
    fn another_model_is_a_404_and_a_suffix_picks_the_strategy() {
        let err = chat(r#"{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}"#)
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::NOT_FOUND);
        let p =
            chat(r#"{"model": "m+early-exit", "messages": [{"role": "user", "content": "x"}]}"#)
                .unwrap();
        assert_eq!(p.request.strategy.to_string(), "early-exit");
    }

    #[test]
    fn logit_bias_maps_minus_100_to_a_ban_and_rejects_bad_entries() {
        let p = chat(r#"{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"7": -100, "9": 2.5}}"#)
            .unwrap();
        let mut bias = p.request.sampling.logit_bias.clone();
        bias.sort_by_key(|(id, _)| *id);
        assert_eq!(bias, vec![(7, f32::NEG_INFINITY), (9, 2.5)]);
        for bad in [r#"{"x": 1}"#, r#"{"7": 101}"#, r#"{"7": "a"}"#] {
            let body = format!(
                r#"{{"messages": [{{"role": "user", "content": "x"}}], "logit_bias": {bad}}}"#
            );
            assert_eq!(
                chat(&body).unwrap_err().param.as_deref(),
                Some("logit_bias")
            );
        }
    }

    #[test]
    fn json_object_and_json_schema_constrain_the_answer_and_an_unenforceable_schema_is_refused() {
        let body = |f: &str| {
            format!(
                r#"{{"messages": [{{"role": "user", "content": "x"}}], "response_format": {f}}}"#
            )
        };
        let json = chat(&body(r#"{"type": "json_object"}"#)).unwrap();
        assert_eq!(json.request.constraint, Some(Grammar::json_object()));
        let text = chat(&body(r#"{"type": "text"}"#)).unwrap();
        assert_eq!(text.request.constraint, None);
        let schema = r#"{"type": "object", "properties": {"sum": {"type": "integer"}}}"#;
        let typed = chat(&body(&format!(
            r#"{{"type": "json_schema", "json_schema": {{"name": "s", "schema": {schema}}}}}"#
        )))
        .unwrap();
        let expected: Value = serde_json::from_str(schema).unwrap();
        assert_eq!(
            typed.request.constraint,
            Some(Grammar::from_json_schema(&expected).unwrap())
        );
        for (bad, says) in [
            (r#"{"type": "json_schema", "json_schema": {}}"#, "needs"),
            (
                r#"{"type": "json_schema", "json_schema": {"schema": {"type": "string", "minLength": 3}}}"#,
                "$: 'minLength' is not enforced",
            ),
        ] {
            let err = chat(&body(bad)).unwrap_err();
            assert_eq!(
                err.param.as_deref(),
                Some("response_format.json_schema.schema")
            );
            assert!(err.message.contains(says), "{}", err.message);
        }
        // A strategy that writes into the answer would break the grammar.
        let err = chat(
            r#"{"model": "m+budget", "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"}}"#,
        )
        .unwrap_err();
        assert!(
            err.message.contains("constrained answer"),
            "{}",
            err.message
        );
        let err = chat(
            r#"{"messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"}, "tool_choice": "required",
                "tools": [{"type": "function", "function": {"name": "f"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("response_format"));
    }

    #[test]
    fn every_thinking_budget_dialect_sets_the_budget_stage() {
        for (field, tokens) in [
            (r#""thinking_token_budget": 40"#, 40),
            (r#""thinking_budget_tokens": 41"#, 41),
            (r#""reasoning_budget_tokens": 42"#, 42),
            (r#""reasoning": {"max_tokens": 43}"#, 43),
            (r#""chat_template_kwargs": {"enable_thinking": false}"#, 1),
        ] {
            let p = chat(&format!(
                r#"{{"messages": [{{"role": "user", "content": "x"}}], {field}}}"#
            ))
            .unwrap();
            let want =
                StrategySpec::parse("budget", &[format!("reasoning_tokens={tokens}")]).unwrap();
            assert_eq!(p.request.strategy, want, "{field}");
        }
        let on = chat(r#"{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"enable_thinking": true}}"#)
            .unwrap();
        assert_eq!(on.request.strategy, StrategySpec::none());
    }

    #[test]
    fn template_kwargs_pass_through_and_must_be_an_object() {
        let p = chat(r#"{"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"enable_thinking": true, "custom": [1, 2]}}"#)
            .unwrap();
        assert_eq!(
            p.request.template_kwargs["custom"],
            serde_json::json!([1, 2])
        );
        assert_eq!(
            p.request.template_kwargs["enable_thinking"],
            Value::Bool(true)
        );
        for (bad, param) in [
            (r#""chat_template_kwargs": [1]"#, "chat_template_kwargs"),
            (r#""chat_template_kwargs": "x""#, "chat_template_kwargs"),
            (
                r#""chat_template_kwargs": {"enable_thinking": "no"}"#,
                "chat_template_kwargs.enable_thinking",
            ),
        ] {
            let err = chat(&format!(
                r#"{{"messages": [{{"role": "user", "content": "x"}}], {bad}}}"#
            ))
            .unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err.param.as_deref(), Some(param), "{bad}");
        }
    }

    #[test]
    fn offered_tools_reach_the_template_and_a_tool_conversation_maps_onto_messages() {
        let p = chat(
            r#"{"messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}],
              "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}"#,
        )
        .unwrap();
        assert_eq!(p.tools, ["get_weather"]);
        assert_eq!(
            p.request.template_kwargs["tools"][0]["function"]["name"],
            "get_weather"
        );
        let Prompt::Chat(messages) = &p.request.prompt else {
            panic!("a chat prompt")
        };
        assert_eq!(
            messages[1].tool_calls[0]["function"]["arguments"],
            serde_json::json!({"city": "Paris"})
        );
        assert_eq!(
            (
                messages[2].role.as_str(),
                messages[2].tool_call_id.as_deref()
            ),
            ("tool", Some("call_1"))
        );
        // "none" keeps the tools out of the prompt; no tools, no parsing.
        let none = chat(r#"{"messages": [{"role": "user", "content": "x"}], "tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}]}"#).unwrap();
        assert!(none.tools.is_empty() && !none.request.template_kwargs.contains_key("tools"));
        let err = chat(r#"{"messages": [{"role": "user", "content": "x", "tool_calls": []}]}"#)
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].tool_calls"));
        let err = plan(
            Endpoint::Completions,
            br#"{"prompt": "x", "tools": []}"#,
            "m",
            &defaults(),
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools"));
    }

    #[test]
    fn completions_take_logprobs_as_a_count() {
        let p = plan(
            Endpoint::Completions,
            br#"{"prompt": "1 2 3", "logprobs": 2}"#,
            "m",
            &defaults(),
        )
        .unwrap();
        assert_eq!((p.request.logprobs, p.request.top_logprobs), (true, 2));
        assert!(matches!(p.request.prompt, Prompt::Text(_)));
    }
}
