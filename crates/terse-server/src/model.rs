//! What the server answers with: the local engine, or an upstream OpenAI-compatible
//! server (proxy mode, in front of llama.cpp's server, vLLM, SGLang).
//!
//! In proxy mode a request with no strategy and one choice passes through: its body
//! goes upstream as it came (the `terse` object removed, the upstream's model name
//! set) and the upstream's answer, streamed or not, comes back byte for byte (but for a
//! usage chunk the client did not ask for, see [`crate::proxy_meter`], which also
//! counts its tokens for `/metrics`); its errors keep their status in the shape of
//! [`ApiError`]. Any other request runs
//! through [`OpenAiBackend`]: its strategies over streamed text, `n` fanned out as
//! separate requests. An upstream that cannot be reached is a 502 naming its address.
//! An `https://` upstream is reached over TLS (rustls, the web's root certificates).

use crate::api::{Endpoint, Plan};
use crate::error::ApiError;
use crate::proxy_meter::PassThroughMeter;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use terse_reason::{
    Backend, BackendError, ChoicesSink, Completion, CompletionRequest, EngineLoad, LocalBackend,
    OpenAiBackend, Prompt,
};

/// An OpenAI-compatible server to proxy.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its base URL, with or without `/v1`.
    pub base_url: String,
    /// The model name to send it.
    pub model: String,
    /// Its Bearer key, if it wants one.
    pub api_key: Option<String>,
}

/// What a [`Loader`](crate::Loader) makes.
pub enum Model {
    Local(Box<LocalBackend>),
    Proxy(Upstream),
}

/// The loaded model, shared by the routes.
#[derive(Clone)]
pub enum Served {
    Local(Arc<LocalBackend>),
    Proxy(Arc<Proxy>),
}

pub struct Proxy {
    /// The base URL without `/v1`.
    base: String,
    upstream: Upstream,
    client: reqwest::Client,
    backend: OpenAiBackend,
}

impl From<Model> for Served {
    fn from(model: Model) -> Self {
        match model {
            Model::Local(backend) => Served::Local(Arc::from(backend)),
            Model::Proxy(upstream) => {
                let trimmed = upstream.base_url.trim_end_matches('/');
                let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string();
                Served::Proxy(Arc::new(Proxy {
                    backend: OpenAiBackend::new(&base, &upstream.model, upstream.api_key.clone()),
                    base,
                    upstream,
                    client: reqwest::Client::new(),
                }))
            }
        }
    }
}

impl Served {
    /// The context size, where the server knows it.
    pub fn ctx_size(&self) -> Option<usize> {
        match self {
            Served::Local(b) => Some(b.ctx_size()),
            Served::Proxy(_) => None,
        }
    }

    pub fn load(&self) -> Option<EngineLoad> {
        match self {
            Served::Local(b) => Some(b.load()),
            Served::Proxy(_) => None,
        }
    }

    /// The proxy, when `plan` passes through it untouched.
    pub fn pass_through(&self, plan: &Plan) -> Option<&Arc<Proxy>> {
        match self {
            Served::Proxy(p) if plan.request.strategy.stages.is_empty() && plan.n == 1 => Some(p),
            _ => None,
        }
    }

    /// A 400 when the prompt leaves no room to generate, or a biased token is not in
    /// the vocabulary (the local engine; an upstream checks its own). `max_tokens` is
    /// capped at the context size.
    pub fn check(&self, plan: &mut Plan) -> Result<(), ApiError> {
        let backend = match self {
            Served::Local(backend) => backend,
            Served::Proxy(_) if !plan.tools.is_empty() && self.pass_through(plan).is_none() => {
                return Err(ApiError::invalid_param(
                    "tools",
                    "tools with a strategy or n > 1 are not served through an upstream yet; \
                     without them the request passes through and the upstream serves its tools",
                ))
            }
            Served::Proxy(_) => return Ok(()),
        };
        let vocab = backend.tokenizer().vocab_size();
        if let Some((id, _)) = plan
            .request
            .sampling
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= vocab)
        {
            return Err(ApiError::invalid_param(
                "logit_bias",
                format!("token {id} is not in the vocabulary of {vocab} tokens"),
            ));
        }
        let text = backend
            .render(&plan.request)
            .map_err(|e| ApiError::invalid_param("messages", e.to_string()))?;
        if !plan.tools.is_empty() {
            // A template that does not read `tools` would drop them without a word.
            let mut without = plan.request.clone();
            without.template_kwargs.remove("tools");
            let plain = backend
                .render(&without)
                .map_err(|e| ApiError::invalid_param("messages", e.to_string()))?;
            if plain == text {
                return Err(ApiError::invalid_param(
                    "tools",
                    "this model's chat template does not render tools",
                ));
            }
        }
        let add_bos = matches!(plan.request.prompt, Prompt::Text(_));
        let tokens = backend.tokenizer().encode(&text, add_bos, true).len();
        if tokens >= backend.ctx_size() {
            return Err(ApiError::exceeds_context(tokens, backend.ctx_size()));
        }
        plan.request.max_tokens = plan.request.max_tokens.min(backend.ctx_size());
        Ok(())
    }

    /// Runs the choices of one request (blocking), streaming each one's text to
    /// `sink` with its index. On the local engine the choices are siblings (the
    /// prompt is prefilled once and forked) and a `false` from `sink` cancels that
    /// choice; through a proxy each runs to its end, one after another. A strategy
    /// that draws several traces (`consistency`) answers each choice whole.
    pub fn complete(
        &self,
        requests: &[CompletionRequest],
        sink: ChoicesSink<'_>,
    ) -> Vec<Result<Completion, ApiError>> {
        let backend: &dyn Backend = match self {
            Served::Local(b) => b.as_ref(),
            Served::Proxy(p) => &p.backend,
        };
        let results = match self {
            Served::Local(b) if requests.iter().all(|r| r.strategy.is_single_trace()) => {
                match b.complete_siblings_until(requests, sink) {
                    Ok(results) => results,
                    Err(e) => {
                        let error = api_error(e);
                        return requests.iter().map(|_| Err(error.clone())).collect();
                    }
                }
            }
            _ => requests
                .iter()
                .enumerate()
                .map(|(index, request)| {
                    backend.complete_with(request, &mut |kind, text, logprobs| {
                        sink(index, kind, text, logprobs);
                    })
                })
                .collect(),
        };
        results.into_iter().map(|r| r.map_err(api_error)).collect()
    }
}

/// The meter, even after a panic elsewhere poisoned its lock (it only counts).
fn lock(meter: &Mutex<PassThroughMeter>) -> std::sync::MutexGuard<'_, PassThroughMeter> {
    meter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn api_error(e: BackendError) -> ApiError {
    match e {
        BackendError::Http { url, detail } => ApiError::bad_gateway(&url, &detail),
        BackendError::BadResponse { url, detail } => ApiError::bad_gateway(&url, &detail),
        BackendError::Strategy(s) => s.into(),
        other => ApiError::internal(other.to_string()),
    }
}

impl Proxy {
    /// Sends `body` upstream as it came and answers with the upstream's response;
    /// `guard` (the request's admission) is held until that response's body has been
    /// sent or dropped.
    pub async fn forward(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        guard: impl Send + Sync + 'static,
    ) -> Result<Response, ApiError> {
        let mut value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))?;
        let stream = value["stream"].as_bool().unwrap_or(false);
        let usage_asked = value["stream_options"]["include_usage"].as_bool() == Some(true);
        if let Value::Object(map) = &mut value {
            map.remove("terse");
            map.insert("model".into(), Value::String(self.upstream.model.clone()));
            // The meter takes the usage chunk out again (see `proxy_meter`).
            if stream && !usage_asked {
                map.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        let path = match endpoint {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        };
        let url = format!("{}{path}", self.base);
        let mut request = self.client.post(&url).json(&value);
        if let Some(key) = &self.upstream.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::bad_gateway(&url, &e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(ApiError::upstream(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                &url,
                &message,
            ));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let meter = Arc::new(Mutex::new(PassThroughMeter::new(
            stream,
            stream && !usage_asked,
        )));
        let at_end = meter.clone();
        let body = response
            .bytes_stream()
            .map(move |chunk| {
                let _held = &guard;
                chunk.map(|bytes| lock(&meter).feed(&bytes))
            })
            .chain(futures_util::stream::once(async move {
                Ok::<_, reqwest::Error>(lock(&at_end).finish())
            }));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from_stream(body))
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}
