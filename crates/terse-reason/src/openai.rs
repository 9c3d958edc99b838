//! Any OpenAI-compatible server (`/v1/chat/completions`) as a backend: a llama.cpp
//! server, vLLM or SGLang, so work measured here carries over to a distributed engine.

use crate::{Backend, BackendError, ChatMessage, Completion, Finish, Sampling};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

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

    fn url(&self) -> String {
        format!("{}/v1/chat/completions", self.base_url)
    }
}

impl Backend for OpenAiBackend {
    fn fingerprint(&self) -> String {
        format!("openai:{}#{}", self.base_url, self.model)
    }

    fn render(&self, messages: &[ChatMessage]) -> Result<String, BackendError> {
        serde_json::to_string(messages).map_err(|e| BackendError::BadResponse {
            url: self.url(),
            detail: e.to_string(),
        })
    }

    fn complete(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
    ) -> Result<Completion, BackendError> {
        let url = self.url();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        });
        // Non-standard knobs that llama.cpp, vLLM and SGLang accept.
        if sampling.top_k > 0 {
            body["top_k"] = json!(sampling.top_k);
        }
        if sampling.min_p > 0.0 {
            body["min_p"] = json!(sampling.min_p);
        }
        let mut request = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let start = Instant::now();
        let response = request
            .send_string(&body.to_string())
            .map_err(|e| BackendError::Http {
                url: url.clone(),
                detail: match e {
                    ureq::Error::Status(code, r) => {
                        format!("HTTP {code}: {}", r.into_string().unwrap_or_default())
                    }
                    other => other.to_string(),
                },
            })?;
        let text = response.into_string().map_err(|e| BackendError::Http {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        let latency = start.elapsed();
        parse_completion(&text, latency).map_err(|detail| BackendError::BadResponse { url, detail })
    }
}

/// Reads the first choice and the usage of a chat completion response.
fn parse_completion(body: &str, latency: Duration) -> Result<Completion, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let choice = v["choices"].get(0).ok_or("no choices")?;
    let text = choice["message"]["content"]
        .as_str()
        .ok_or("no choices[0].message.content")?;
    let usage = &v["usage"];
    Ok(Completion {
        text: text.to_string(),
        prompt_tokens: usage["prompt_tokens"]
            .as_u64()
            .ok_or("no usage.prompt_tokens")?,
        output_tokens: usage["completion_tokens"]
            .as_u64()
            .ok_or("no usage.completion_tokens")?,
        latency,
        finish: if choice["finish_reason"] == "length" {
            Finish::Length
        } else {
            Finish::Stop
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_completion_body_is_read() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"42"},"finish_reason":"length"}],
                       "usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        let c = parse_completion(body, Duration::from_millis(5)).unwrap();
        assert_eq!(c.text, "42");
        assert_eq!((c.prompt_tokens, c.output_tokens), (12, 3));
        assert_eq!(c.finish, Finish::Length);
    }

    #[test]
    fn a_body_without_usage_is_an_error_naming_the_field() {
        let body = r#"{"choices":[{"message":{"content":"42"}}]}"#;
        assert_eq!(
            parse_completion(body, Duration::ZERO).unwrap_err(),
            "no usage.prompt_tokens"
        );
        assert!(parse_completion("<html>", Duration::ZERO)
            .unwrap_err()
            .starts_with("not JSON"));
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        let backend = OpenAiBackend::new("http://127.0.0.1:9/v1/", "m", None);
        let msgs = [ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }];
        let sampling = Sampling {
            max_tokens: 4,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
        };
        let err = backend.complete(&msgs, &sampling).unwrap_err().to_string();
        assert!(
            err.contains("http://127.0.0.1:9/v1/chat/completions"),
            "{err}"
        );
    }
}
