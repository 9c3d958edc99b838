//! Any OpenAI-compatible server as a backend: a llama.cpp server, vLLM or SGLang, so
//! work measured here carries over to a distributed engine.
//!
//! A request whose strategy does not steer (none, or prompt stages only) goes to
//! `/v1/chat/completions` as it is. A steered one runs the same [`Runner`] as the
//! local engine, over text: the prompt is rendered by the server
//! (`/apply-template`, llama.cpp's endpoint), then streamed from `/v1/completions`
//! token by token into the runner. Injected text closes the stream and continues
//! with a new one whose prompt holds everything so far; a probe is a second,
//! non-streamed request that re-sends the prefix with the probe text (the server's
//! prefix cache makes that cheap) and runs while the main stream goes on; a stop
//! closes the stream. Strategies that need logits or hidden states are refused with
//! an error naming what they need.
//!
//! Token counts come from the server: each stream's and probe's `usage` when it
//! sends one, else one token per streamed chunk. A probe's prefilled tokens are
//! llama.cpp's `timings.prompt_n` (what it computed beyond its cache) when present,
//! otherwise the whole re-sent prompt, which overstates the cost.

use crate::strategy::{Runner, StrategyError};
use crate::{
    Backend, BackendError, Capabilities, ChatMessage, Completion, CompletionRequest, Finish,
    Grammar, Prompt, Sink, TokenLogprob, Usage,
};
use serde_json::{json, Value};
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use terse_engine::{Action, ProbeEnd, ProbeRequest, ProbeResult, SamplerConfig, StopReason};

pub struct OpenAiBackend {
    base_url: String,
    model: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl OpenAiBackend {
    /// `base_url` up to and including `/v1` is accepted with or without `/v1`.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Self {
        let trimmed = base_url.trim_end_matches('/');
        let base_url = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string();
        OpenAiBackend {
            base_url,
            model: model.to_string(),
            api_key,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(Duration::from_secs(3600))
                .build(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn post(&self, path: &str, body: &Value) -> Result<ureq::Response, BackendError> {
        let url = self.url(path);
        let mut request = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        request
            .send_string(&body.to_string())
            .map_err(|e| BackendError::Http {
                url,
                detail: match e {
                    ureq::Error::Status(code, r) => {
                        format!("HTTP {code}: {}", r.into_string().unwrap_or_default())
                    }
                    other => other.to_string(),
                },
            })
    }

    fn post_json(&self, path: &str, body: &Value) -> Result<Value, BackendError> {
        let url = self.url(path);
        let text = self
            .post(path, body)?
            .into_string()
            .map_err(|e| BackendError::Http {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        serde_json::from_str(&text).map_err(|e| BackendError::BadResponse {
            url,
            detail: format!("not JSON ({e})"),
        })
    }

    /// The server's rendering of a conversation (llama.cpp's `/apply-template`).
    fn apply_template(
        &self,
        messages: &[ChatMessage],
        template_kwargs: &serde_json::Map<String, Value>,
    ) -> Result<String, BackendError> {
        let url = self.url("/apply-template");
        let mut body = json!({ "messages": messages });
        if !template_kwargs.is_empty() {
            body["chat_template_kwargs"] = json!(template_kwargs);
        }
        let v = self.post_json("/apply-template", &body)?;
        v["prompt"]
            .as_str()
            .map(str::to_string)
            .ok_or(BackendError::BadResponse {
                url,
                detail: "no `prompt` in the /apply-template answer (the server must render chat templates, as llama.cpp's does)".into(),
            })
    }

    fn sampling_fields(&self, body: &mut Value, sampling: &SamplerConfig) {
        body["temperature"] = json!(sampling.temperature);
        body["top_p"] = json!(sampling.top_p);
        body["seed"] = json!(sampling.seed);
        // Non-standard knobs that llama.cpp, vLLM and SGLang accept.
        if sampling.top_k > 0 {
            body["top_k"] = json!(sampling.top_k);
        }
        if sampling.min_p > 0.0 {
            body["min_p"] = json!(sampling.min_p);
        }
        if sampling.repeat_penalty != 1.0 {
            body["repeat_penalty"] = json!(sampling.repeat_penalty);
        }
        if sampling.presence_penalty != 0.0 {
            body["presence_penalty"] = json!(sampling.presence_penalty);
        }
        if sampling.frequency_penalty != 0.0 {
            body["frequency_penalty"] = json!(sampling.frequency_penalty);
        }
    }

    /// The `/v1/chat/completions` body for `request` (an unsteered request).
    fn chat_body(&self, request: &CompletionRequest, messages: &[ChatMessage]) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        });
        self.sampling_fields(&mut body, &request.sampling);
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        if !request.template_kwargs.is_empty() {
            body["chat_template_kwargs"] = json!(request.template_kwargs);
        }
        if request.logprobs {
            body["logprobs"] = json!(true);
            if request.top_logprobs > 0 {
                body["top_logprobs"] = json!(request.top_logprobs);
            }
        }
        // `unconstrained_upstream` has refused every other grammar.
        match request.constraint.as_ref().map(Grammar::json_schema) {
            Some(Some(schema)) => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": true},
                });
            }
            Some(None) => body["response_format"] = json!({ "type": "json_object" }),
            None => {}
        }
        body
    }

    /// A grammar the upstream cannot be asked to enforce: only a bare JSON object or a
    /// JSON schema on chat completions is (its `response_format`).
    fn unconstrained_upstream(&self, request: &CompletionRequest) -> Result<(), BackendError> {
        match (&request.constraint, &request.prompt) {
            (None, _) => Ok(()),
            (Some(g), Prompt::Chat(_)) if g.is_json_object() || g.json_schema().is_some() => Ok(()),
            (Some(_), _) => Err(StrategyError::Unsupported {
                strategy: request.strategy.to_string(),
                what: "a grammar other than a JSON object or schema on chat completions",
                backend: "openai".into(),
            }
            .into()),
        }
    }

    fn chat(
        &self,
        request: &CompletionRequest,
        messages: &[ChatMessage],
    ) -> Result<Completion, BackendError> {
        let body = self.chat_body(request, messages);
        let start = Instant::now();
        let v = self.post_json("/v1/chat/completions", &body)?;
        parse_chat(&v, start.elapsed()).map_err(|detail| BackendError::BadResponse {
            url: self.url("/v1/chat/completions"),
            detail,
        })
    }

    fn steered(
        &self,
        request: &CompletionRequest,
        prompt: String,
        sink: Sink<'_>,
    ) -> Result<Completion, BackendError> {
        let start = Instant::now();
        let mut runner =
            Runner::new(&request.strategy, &prompt, None, None).with_stop_strings(&request.stop);
        if let Some(stage) = runner.needs_logits() {
            return Err(StrategyError::Unsupported {
                strategy: stage.into(),
                what: "the logits before sampling",
                backend: "openai".into(),
            }
            .into());
        }
        let (pieces_tx, pieces_rx) =
            mpsc::channel::<(crate::PieceKind, String, Vec<TokenLogprob>)>();
        runner = runner.with_sink(Box::new(move |kind, text, logprobs| {
            pieces_tx
                .send((kind, text.to_string(), logprobs.to_vec()))
                .is_ok()
        }));
        let mut usage = Usage::default();
        let (probe_tx, probe_rx) = mpsc::channel::<Result<(ProbeResult, u64, u64), BackendError>>();
        let mut probes_in_flight = 0usize;
        let mut engine_reason = StopReason::MaxTokens;
        let mut first_stream = true;

        'streams: while !runner.stopped() && (usage.output_tokens as usize) < request.max_tokens {
            let context = format!("{prompt}{}", runner.model_text());
            let mut body = json!({
                "model": self.model,
                "prompt": context,
                "max_tokens": request.max_tokens - usage.output_tokens as usize,
                "stream": true,
                "stream_options": {"include_usage": true},
                "logprobs": 1,
            });
            self.sampling_fields(&mut body, &request.sampling);
            let response = self.post("/v1/completions", &body)?;
            let reader = std::io::BufReader::new(response.into_reader());
            let mut streamed_tokens = 0u64;
            let mut reported: Option<(u64, u64)> = None;
            let mut finish_reason = None;
            for line in reader.lines() {
                let line = line.map_err(|e| BackendError::Http {
                    url: self.url("/v1/completions"),
                    detail: e.to_string(),
                })?;
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    break;
                }
                let v: Value =
                    serde_json::from_str(data).map_err(|e| BackendError::BadResponse {
                        url: self.url("/v1/completions"),
                        detail: format!("stream chunk is not JSON ({e})"),
                    })?;
                if let (Some(p), Some(c)) = (
                    v["usage"]["prompt_tokens"].as_u64(),
                    v["usage"]["completion_tokens"].as_u64(),
                ) {
                    reported = Some((p, c));
                }
                let Some(choice) = v["choices"].get(0) else {
                    continue;
                };
                if let Some(reason) = choice["finish_reason"].as_str() {
                    finish_reason = Some(reason.to_string());
                }
                let text = choice["text"].as_str().unwrap_or("");
                if text.is_empty() {
                    continue;
                }
                streamed_tokens += 1;
                let logprob = streamed_logprob(&choice["logprobs"]);
                let mut actions = runner.observe(text, logprob, None, &[], false);
                while let Ok(done) = probe_rx.try_recv() {
                    probes_in_flight -= 1;
                    let (result, prefill, decoded) = done?;
                    usage.probe_prefill_tokens += prefill;
                    usage.probe_decoded_tokens += decoded;
                    actions.extend(runner.probe_done(&result));
                }
                for (kind, piece, logprobs) in pieces_rx.try_iter() {
                    sink(kind, &piece, &logprobs);
                }
                let mut restart = false;
                for action in actions {
                    match action {
                        Action::Stop(_) => {
                            usage.output_tokens += streamed_tokens;
                            break 'streams;
                        }
                        Action::Inject { .. } => restart = true,
                        Action::Probe(probe) => {
                            usage.probes += 1;
                            probes_in_flight += 1;
                            let context = format!("{prompt}{}", runner.model_text());
                            self.spawn_probe(context, probe, probe_tx.clone());
                        }
                    }
                }
                if restart {
                    // The runner's text now ends with the injection; continue from it.
                    usage.output_tokens += streamed_tokens;
                    continue 'streams;
                }
            }
            let (prompt_tokens, completion_tokens) = reported.unwrap_or((0, streamed_tokens));
            if first_stream {
                usage.prompt_tokens = prompt_tokens;
                first_stream = false;
            }
            usage.output_tokens += completion_tokens.max(streamed_tokens);
            engine_reason = match finish_reason.as_deref() {
                Some("length") => StopReason::MaxTokens,
                _ => StopReason::EndOfGeneration,
            };
            if engine_reason == StopReason::EndOfGeneration {
                let actions = runner.observe("", None, None, &[], true);
                for (kind, piece, logprobs) in pieces_rx.try_iter() {
                    sink(kind, &piece, &logprobs);
                }
                if !actions.iter().any(|a| matches!(a, Action::Inject { .. })) {
                    break;
                }
            }
        }
        // Probes still running when the answer ended: wait for their counts.
        for (_, prefill, decoded) in probe_rx.iter().take(probes_in_flight).flatten() {
            usage.probe_prefill_tokens += prefill;
            usage.probe_decoded_tokens += decoded;
        }
        let injected = runner.injected_text().to_string();
        let out = runner.finish(engine_reason);
        for (kind, piece, logprobs) in pieces_rx.try_iter() {
            sink(kind, &piece, &logprobs);
        }
        usage.injected_tokens = self.count_tokens(&injected);
        usage.reasoning_tokens = out.reasoning_tokens;
        usage.answer_tokens = out.answer_tokens;
        Ok(Completion {
            finish: if out.stop_reason == "length" {
                Finish::Length
            } else {
                Finish::Stop
            },
            text: out.text,
            reasoning: out.reasoning,
            usage,
            stop_reason: out.stop_reason,
            events: out.events,
            latency_s: start.elapsed().as_secs_f64(),
            engine_time: None,
            logprobs: out.logprobs,
        })
    }

    /// Tokens of `text` in the server's vocabulary (llama.cpp's `/tokenize`); a server
    /// without it gets one token per four bytes, the usual rate for English text.
    fn count_tokens(&self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.post_json("/tokenize", &json!({ "content": text }))
            .ok()
            .and_then(|v| v["tokens"].as_array().map(|t| t.len() as u64))
            .unwrap_or_else(|| text.len().div_ceil(4) as u64)
    }

    /// Runs a probe on its own thread; its result and token counts arrive on `done`.
    fn spawn_probe(
        &self,
        context: String,
        probe: ProbeRequest,
        done: mpsc::Sender<Result<(ProbeResult, u64, u64), BackendError>>,
    ) {
        let backend = OpenAiBackend {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key: self.api_key.clone(),
            agent: self.agent.clone(),
        };
        std::thread::spawn(move || {
            let body = json!({
                "model": backend.model,
                "prompt": format!("{context}{}", probe.text),
                "max_tokens": probe.max_tokens,
                "temperature": 0.0,
                "stop": probe.stop,
                "cache_prompt": true,
            });
            let result = backend.post_json("/v1/completions", &body).map(|v| {
                let text = v["choices"][0]["text"].as_str().unwrap_or("").to_string();
                let decoded = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                let prefill = v["timings"]["prompt_n"]
                    .as_u64()
                    .or(v["usage"]["prompt_tokens"].as_u64())
                    .unwrap_or(0);
                let stopped = v["choices"][0]["finish_reason"].as_str() == Some("stop");
                // A server stops before the stop string and leaves it out: put it back,
                // as the local engine keeps it.
                let (text, end) = match (stopped, probe.stop.first()) {
                    (true, Some(s))
                        if !text.contains(s.as_str()) && decoded < probe.max_tokens as u64 =>
                    {
                        (format!("{text}{s}"), ProbeEnd::StopString)
                    }
                    (true, _) => (text, ProbeEnd::EndOfGeneration),
                    _ => (text, ProbeEnd::MaxTokens),
                };
                (
                    ProbeResult {
                        tag: probe.tag,
                        fork_position: 0,
                        text,
                        tokens: Vec::new(),
                        logprobs: Vec::new(),
                        prefill_tokens: prefill as usize,
                        end,
                    },
                    prefill,
                    decoded,
                )
            });
            let _ = done.send(result);
        });
    }
}

impl Backend for OpenAiBackend {
    fn fingerprint(&self) -> String {
        format!("openai:{}#{}", self.base_url, self.model)
    }

    fn render(&self, request: &CompletionRequest) -> Result<String, BackendError> {
        let mut canonical = json!({
            "prompt": match &request.prompt {
                Prompt::Chat(messages) => json!(request.strategy.prepare_messages(messages)),
                Prompt::Text(text) => json!(text),
            },
        });
        // Kwargs change the server's rendering, so they are part of the prompt's identity.
        if !request.template_kwargs.is_empty() {
            canonical["chat_template_kwargs"] = json!(request.template_kwargs);
        }
        Ok(canonical.to_string())
    }

    fn difficulty(
        &self,
        _request: &CompletionRequest,
        _probe: Option<&std::path::Path>,
    ) -> Result<crate::adaptive::Difficulty, BackendError> {
        Err(StrategyError::Unsupported {
            strategy: "adaptive".into(),
            what: "the prompt's final hidden state (for the difficulty probe)",
            backend: "openai".into(),
        }
        .into())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            logits: false,
            hidden_states: false,
            logprobs: true,
        }
    }

    fn complete_streaming(
        &self,
        request: &CompletionRequest,
        sink: Sink<'_>,
    ) -> Result<Completion, BackendError> {
        self.unconstrained_upstream(request)?;
        match &request.prompt {
            Prompt::Chat(messages) => {
                let messages = request.strategy.prepare_messages(messages);
                if !request.strategy.steers() {
                    let completion = self.chat(request, &messages)?;
                    sink(
                        crate::PieceKind::Content,
                        &completion.text,
                        &completion.logprobs,
                    );
                    return Ok(completion);
                }
                let prompt = self.apply_template(&messages, &request.template_kwargs)?;
                self.steered(request, prompt, sink)
            }
            Prompt::Text(text) => self.steered(request, text.clone(), sink),
        }
    }
}

/// Reads the first choice and the usage of a chat completion response.
fn parse_chat(v: &Value, latency: Duration) -> Result<Completion, String> {
    let choice = v["choices"].get(0).ok_or("no choices")?;
    let text = choice["message"]["content"]
        .as_str()
        .ok_or("no choices[0].message.content")?;
    let reasoning = choice["message"]["reasoning_content"]
        .as_str()
        .map(str::to_string);
    let usage = &v["usage"];
    let output_tokens = usage["completion_tokens"]
        .as_u64()
        .ok_or("no usage.completion_tokens")?;
    let finish = if choice["finish_reason"] == "length" {
        Finish::Length
    } else {
        Finish::Stop
    };
    Ok(Completion {
        text: text.to_string(),
        reasoning,
        usage: Usage {
            prompt_tokens: usage["prompt_tokens"]
                .as_u64()
                .ok_or("no usage.prompt_tokens")?,
            output_tokens,
            ..Usage::default()
        },
        finish,
        stop_reason: if finish == Finish::Length {
            "length"
        } else {
            "eos"
        }
        .into(),
        events: Vec::new(),
        latency_s: latency.as_secs_f64(),
        engine_time: None,
        logprobs: chat_logprobs(&choice["logprobs"]["content"]),
    })
}

/// The log-probability of a streamed completions chunk's token: OpenAI's legacy
/// `token_logprobs` (vLLM, SGLang) or the chat-style `content` (llama.cpp).
fn streamed_logprob(logprobs: &Value) -> Option<f32> {
    logprobs["token_logprobs"]
        .get(0)
        .or_else(|| logprobs["content"].get(0).map(|t| &t["logprob"]))
        .and_then(Value::as_f64)
        .map(|l| l as f32)
}

/// The tokens of a chat choice's `logprobs.content` (OpenAI's shape, which llama.cpp,
/// vLLM and SGLang return when asked); empty when the server sent none.
fn chat_logprobs(content: &Value) -> Vec<TokenLogprob> {
    let Some(tokens) = content.as_array() else {
        return Vec::new();
    };
    tokens
        .iter()
        .filter_map(|t| {
            Some(TokenLogprob {
                text: t["token"].as_str()?.to_string(),
                logprob: t["logprob"].as_f64()? as f32,
                top: t["top_logprobs"]
                    .as_array()
                    .map(|alts| {
                        alts.iter()
                            .filter_map(|a| {
                                Some((
                                    a["token"].as_str()?.to_string(),
                                    a["logprob"].as_f64()? as f32,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StrategySpec;

    #[test]
    fn a_streamed_tokens_logprob_is_read_in_both_shapes() {
        let legacy: Value =
            serde_json::from_str(r#"{"token_logprobs":[-0.5],"tokens":["a"]}"#).unwrap();
        let llama: Value =
            serde_json::from_str(r#"{"content":[{"token":"a","logprob":-0.25}]}"#).unwrap();
        assert_eq!(streamed_logprob(&legacy), Some(-0.5));
        assert_eq!(streamed_logprob(&llama), Some(-0.25));
        assert_eq!(streamed_logprob(&Value::Null), None);
    }

    #[test]
    fn a_chat_completions_logprobs_are_read() {
        let body: Value = serde_json::from_str(
            r#"{"choices":[{"message":{"content":"4 2"},"finish_reason":"stop",
                "logprobs":{"content":[{"token":"4","logprob":-0.25,
                  "top_logprobs":[{"token":"4","logprob":-0.25},{"token":"5","logprob":-1.5}]},
                  {"token":" 2","logprob":-0.5}]}}],
                "usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        )
        .unwrap();
        let c = parse_chat(&body, Duration::from_millis(1)).unwrap();
        assert_eq!(c.logprobs.len(), 2);
        assert_eq!(c.logprobs[0].text, "4");
        assert_eq!(
            c.logprobs[0].top,
            vec![("4".into(), -0.25), ("5".into(), -1.5)]
        );
        assert_eq!(
            (c.logprobs[1].text.as_str(), c.logprobs[1].logprob),
            (" 2", -0.5)
        );
    }

    #[test]
    fn a_chat_completion_body_is_read() {
        let body: Value = serde_json::from_str(
            r#"{"choices":[{"message":{"role":"assistant","content":"42"},"finish_reason":"length"}],
                "usage":{"prompt_tokens":12,"completion_tokens":3}}"#,
        )
        .unwrap();
        let c = parse_chat(&body, Duration::from_millis(5)).unwrap();
        assert_eq!(c.text, "42");
        assert_eq!((c.usage.prompt_tokens, c.usage.output_tokens), (12, 3));
        assert_eq!(c.finish, Finish::Length);
        assert_eq!(c.stop_reason, "length");
    }

    #[test]
    fn a_body_without_usage_is_an_error_naming_the_field() {
        let body: Value =
            serde_json::from_str(r#"{"choices":[{"message":{"content":"42"}}]}"#).unwrap();
        assert_eq!(
            parse_chat(&body, Duration::ZERO).unwrap_err(),
            "no usage.completion_tokens"
        );
    }

    fn request(strategy: &str) -> CompletionRequest {
        CompletionRequest {
            strategy: StrategySpec::parse(strategy, &[]).unwrap(),
            ..CompletionRequest::chat(
                vec![ChatMessage::new("user", "hi")],
                SamplerConfig::greedy(),
                4,
            )
        }
    }

    #[test]
    fn template_kwargs_go_upstream_and_into_the_prompt_identity() {
        let backend = OpenAiBackend::new("http://127.0.0.1:9", "m", None);
        let plain = request("none");
        let mut thinking_off = request("none");
        thinking_off
            .template_kwargs
            .insert("enable_thinking".into(), Value::Bool(false));
        let messages = [ChatMessage::new("user", "hi")];
        assert!(backend.chat_body(&plain, &messages)["chat_template_kwargs"].is_null());
        assert_eq!(
            backend.chat_body(&thinking_off, &messages)["chat_template_kwargs"],
            json!({"enable_thinking": false})
        );
        assert_ne!(
            backend.render(&plain).unwrap(),
            backend.render(&thinking_off).unwrap()
        );
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        let backend = OpenAiBackend::new("http://127.0.0.1:9/v1/", "m", None);
        let err = backend.complete(&request("none")).unwrap_err().to_string();
        assert!(
            err.contains("http://127.0.0.1:9/v1/chat/completions"),
            "{err}"
        );
    }

    #[test]
    fn a_strategy_that_needs_logits_is_refused_by_name() {
        let backend = OpenAiBackend::new("http://127.0.0.1:9", "m", None);
        let err = backend
            .steered(&request("stop-boost"), "prompt".into(), &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stop-boost") && err.contains("logits") && err.contains("openai"),
            "{err}"
        );
    }
}
