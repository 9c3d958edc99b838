//! Errors: [`ApiError`], what a client gets back in OpenAI's error shape, and
//! [`ServerError`], why the server could not start or stopped.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Why the server could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
    #[error("loading the model failed: {0}")]
    Load(String),
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
}

/// An error answered to a client: `{"error": {"message", "type", "param", "code"}}`
/// with its HTTP status (and, for a prompt over the context, the counts).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    /// More fields of the error object (`n_prompt_tokens`, `n_ctx`); boxed, as few
    /// errors carry any and every `Result` of the API carries the error's size.
    pub extra: Box<Map<String, Value>>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            extra: Box::default(),
        }
    }

    /// 400: a field has a bad value (or the body is not what the endpoint takes).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.into(),
        )
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..Self::invalid(message)
        }
    }

    /// 400: the prompt leaves no room to generate in the context.
    pub fn exceeds_context(prompt_tokens: usize, ctx: usize) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "exceed_context_size_error",
            format!(
                "the request has {prompt_tokens} prompt tokens, which leaves no room to \
                 generate in the context of {ctx} tokens"
            ),
        );
        e.code = Some("context_length_exceeded".into());
        e.param = Some("messages".into());
        e.extra
            .insert("n_prompt_tokens".into(), json!(prompt_tokens));
        e.extra.insert("n_ctx".into(), json!(ctx));
        e
    }

    /// 401: no key, or the wrong one.
    pub fn unauthorized() -> Self {
        ApiError {
            code: Some("invalid_api_key".into()),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or invalid API key (send `Authorization: Bearer KEY`)",
            )
        }
    }

    /// 404: a model this server does not serve.
    pub fn unknown_model(model: &str, served: &str) -> Self {
        ApiError {
            param: Some("model".into()),
            code: Some("model_not_found".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "not_found_error",
                format!(
                    "the model '{model}' does not exist here; this server serves '{served}' \
                     (optionally with a strategy suffix, '{served}+early-exit')"
                ),
            )
        }
    }

    /// 404: no such route.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("no route {method} {path}"),
        )
    }

    /// 429: the waiting queue is full.
    pub fn queue_full(limit: usize) -> Self {
        ApiError {
            code: Some("queue_full".into()),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("the server is at capacity ({limit} requests waiting); retry later"),
            )
        }
    }

    /// 503: the model is still loading.
    pub fn loading() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_error",
            "the model is loading",
        )
    }

    /// 500: the engine failed on this request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 502: the upstream server could not be reached or answered nonsense.
    pub fn bad_gateway(url: &str, detail: &str) -> Self {
        ApiError {
            code: Some("upstream_unavailable".into()),
            ..Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("the upstream server at {url} failed: {detail}"),
            )
        }
    }

    /// The upstream's own error, with its status.
    pub fn upstream(status: StatusCode, url: &str, message: &str) -> Self {
        let kind = if status.is_client_error() {
            "invalid_request_error"
        } else {
            "upstream_error"
        };
        Self::new(status, kind, format!("upstream {url}: {message}"))
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("message".into(), json!(self.message));
        error.insert("type".into(), json!(self.kind));
        error.insert("param".into(), json!(self.param));
        error.insert("code".into(), json!(self.code));
        for (k, v) in self.extra.iter() {
            error.insert(k.clone(), v.clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<terse_reason::StrategyError> for ApiError {
    fn from(e: terse_reason::StrategyError) -> Self {
        ApiError::invalid_param("terse.strategy", e.to_string())
    }
}
