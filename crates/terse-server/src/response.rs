//! The OpenAI response shapes: whole responses, streamed chunks, usage with terse's
//! own `terse` object, and log-probabilities.

use crate::api::{Endpoint, Plan};
use serde_json::{json, Value};
use terse_reason::{Completion, Finish, TokenLogprob};

/// What every response and chunk of one request shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
    pub strategy: String,
    /// The names of the tools offered: calls in an answer come back as `tool_calls`.
    pub tools: Vec<String>,
}

impl Envelope {
    pub fn new(plan: &Plan) -> Self {
        let prefix = match plan.endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completions => "cmpl",
        };
        Envelope {
            id: format!("{prefix}-{:016x}", crate::api::random_u64()),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            model: plan.model.clone(),
            endpoint: plan.endpoint,
            strategy: plan.request.strategy.to_string(),
            tools: plan.tools.clone(),
        }
    }

    /// A chat answer's content and the calls it makes (none when no tools were
    /// offered), the calls in the API's shape with fresh ids.
    pub fn answer(&self, text: &str) -> (Value, Vec<Value>) {
        if self.tools.is_empty() {
            return (json!(text), Vec::new());
        }
        let offered: Vec<&str> = self.tools.iter().map(String::as_str).collect();
        let (content, calls) = crate::tools::parse(text, &offered);
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| c.to_json(&format!("call_{:016x}", crate::api::random_u64())))
            .collect();
        // OpenAI's content is null beside calls and nothing else.
        let content = if content.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(content)
        };
        (content, calls)
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    fn wrap(&self, chunk: bool, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// The whole response for `completions` (one per choice, in order).
    pub fn response(&self, completions: &[Completion], top_logprobs: bool) -> Value {
        let choices = completions
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (mut choice, called) = match self.endpoint {
                    Endpoint::Chat => {
                        let (content, calls) = self.answer(&c.text);
                        let mut message = json!({"role": "assistant", "content": content});
                        if let Some(r) = &c.reasoning {
                            message["reasoning_content"] = json!(r);
                            message["reasoning"] = json!(r);
                        }
                        let called = !calls.is_empty();
                        if called {
                            message["tool_calls"] = json!(calls);
                        }
                        (json!({"index": i, "message": message}), called)
                    }
                    Endpoint::Completions => {
                        let mut choice = json!({"index": i, "text": c.text});
                        if let Some(r) = &c.reasoning {
                            choice["reasoning_content"] = json!(r);
                        }
                        (choice, false)
                    }
                };
                choice["logprobs"] = self.logprobs(&c.logprobs, top_logprobs, 0);
                choice["finish_reason"] = if called {
                    json!("tool_calls")
                } else {
                    json!(finish_reason(c.finish))
                };
                choice["terse"] = choice_terse(c);
                choice
            })
            .collect();
        let mut body = self.wrap(false, choices);
        body["usage"] = self.usage(completions);
        body
    }

    /// A chunk carrying `delta` for choice `index` (chat: a delta object; completions:
    /// the text).
    pub fn delta_chunk(&self, index: usize, delta: Value, include_usage: bool) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({"index": index, "delta": delta, "logprobs": null,
                                     "finish_reason": null}),
            Endpoint::Completions => {
                let mut c = json!({"index": index, "text": delta.get("content")
                    .cloned().unwrap_or(json!("")), "logprobs": null, "finish_reason": null});
                if let Some(r) = delta.get("reasoning_content") {
                    c["reasoning_content"] = r.clone();
                }
                c
            }
        };
        let mut chunk = self.wrap(true, vec![choice]);
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The last chunk of choice `index`: its finish reason, the log-probabilities of
    /// its tokens after the `streamed` ones already sent with their text (a strategy
    /// that answers whole sends its tokens here), and terse's stop reason.
    pub fn finish_chunk(
        &self,
        index: usize,
        completion: &Completion,
        logprobs: bool,
        streamed: usize,
        include_usage: bool,
    ) -> Value {
        let mut chunk = self.delta_chunk(index, json!({}), include_usage);
        let choice = &mut chunk["choices"][0];
        if self.endpoint == Endpoint::Completions {
            choice["text"] = json!("");
        }
        let rest = completion.logprobs.get(streamed..).unwrap_or_default();
        let offset = completion.logprobs[..streamed.min(completion.logprobs.len())]
            .iter()
            .map(|t| t.text.len())
            .sum();
        choice["logprobs"] = if rest.is_empty() && streamed > 0 {
            Value::Null
        } else {
            self.logprobs(rest, logprobs, offset)
        };
        choice["finish_reason"] = json!(finish_reason(completion.finish));
        choice["terse"] = choice_terse(completion);
        chunk
    }

    /// The usage chunk of `stream_options.include_usage`: no choices.
    pub fn usage_chunk(&self, completions: &[Completion]) -> Value {
        let mut chunk = self.wrap(true, Vec::new());
        chunk["usage"] = self.usage(completions);
        chunk
    }

    /// OpenAI's usage, summed over the choices, with a `terse` object: the strategy,
    /// probes and injected tokens, the cost tokens (everything processed beyond the
    /// prompt), and the first choice's stop reason and strategy events.
    pub fn usage(&self, completions: &[Completion]) -> Value {
        let prompt = completions.first().map_or(0, |c| c.usage.prompt_tokens);
        let cached = completions
            .first()
            .map_or(0, |c| c.usage.prompt_cached_tokens);
        let sum = |f: &dyn Fn(&Completion) -> u64| completions.iter().map(f).sum::<u64>();
        let completion_tokens = sum(&|c| c.usage.output_tokens);
        // OpenAI's reasoning tokens are those of a think section; a model without one
        // reports 0.
        let reasoning = sum(&|c| {
            if c.reasoning.is_some() {
                c.usage.reasoning_tokens
            } else {
                0
            }
        });
        let first = completions.first();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
            "terse": {
                "strategy": self.strategy,
                "probes": sum(&|c| c.usage.probes),
                "probe_tokens": sum(&|c| c.usage.probe_tokens()),
                "injected_tokens": sum(&|c| c.usage.injected_tokens),
                "cost_tokens": sum(&|c| c.usage.cost_tokens()),
                "stop_reason": first.map(|c| c.stop_reason.clone()),
                "events": first.map(|c| json!(c.events)).unwrap_or(json!([])),
            },
        })
    }

    /// The OpenAI shape of `tokens`' log-probabilities (`null` unless `requested`);
    /// completions' `text_offset` counts from `text_offset`, where the first token's
    /// text starts in the answer.
    pub fn logprobs(&self, tokens: &[TokenLogprob], requested: bool, text_offset: usize) -> Value {
        if !requested {
            return Value::Null;
        }
        match self.endpoint {
            Endpoint::Chat => {
                let entry = |text: &str, logprob: f32| json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()});
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut e = entry(&t.text, t.logprob);
                        e["top_logprobs"] =
                            json!(t.top.iter().map(|(s, l)| entry(s, *l)).collect::<Vec<_>>());
                        e
                    })
                    .collect();
                json!({"content": content})
            }
            Endpoint::Completions => {
                let mut offset = text_offset;
                let mut text_offset = Vec::with_capacity(tokens.len());
                for t in tokens {
                    text_offset.push(offset);
                    offset += t.text.len();
                }
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        Value::Object(t.top.iter().map(|(s, l)| (s.clone(), json!(l))).collect())
                    })
                    .collect();
                json!({
                    "tokens": tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": text_offset,
                })
            }
        }
    }
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// Per choice: why terse stopped it and what its strategy did.
fn choice_terse(c: &Completion) -> Value {
    json!({"stop_reason": c.stop_reason, "events": c.events})
}
