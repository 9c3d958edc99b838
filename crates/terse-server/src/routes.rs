//! The HTTP routes (each response carries an `x-request-id`), Bearer auth, admission to the engine, and the bridge from the
//! blocking engine to async responses (whole JSON or SSE).
//!
//! The choices of a request run on a blocking thread (the local engine's `n > 1` as
//! siblings sharing the prompt's prefill); the engine batches all of them (of all
//! requests) into shared forward passes.
//! Its visible pieces go through an unbounded channel to the handler. When the client
//! goes away the channel's receiver is dropped, the next piece finds nobody listening,
//! and the engine ends that sequence at its next token, freeing its KV cache.

use crate::api::{self, Defaults, Endpoint, Plan};
use crate::error::ApiError;
use crate::metrics;
use crate::model::Served;
use crate::response::Envelope;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use terse_reason::{Completion, CompletionRequest, PieceKind, TokenLogprob};
use tokio::sync::mpsc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// What the routes share.
pub struct AppState {
    pub model_name: String,
    pub api_key: Option<String>,
    pub max_sequences: usize,
    pub max_queue: usize,
    pub defaults: Defaults,
    /// Set once the model has loaded.
    pub backend: OnceLock<Served>,
    /// Sequences admitted and not finished (running or waiting for the batch).
    pub admitted: AtomicUsize,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// The router: `/health` and `/metrics` open, `/v1/*` behind the key when one is set.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .merge(v1)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{} does not take {method}", uri.path()),
        ..ApiError::no_route(method.as_str(), uri.path())
    }
}

/// Bearer auth with a constant-time comparison of the key.
async fn auth(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        use subtle::ConstantTimeEq;
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.backend.get() {
        Some(_) => Json(json!({"status": "ok"})).into_response(),
        None => ApiError::loading().into_response(),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let load = state
        .backend
        .get()
        .and_then(Served::load)
        .unwrap_or_default();
    metrics::set_load(load, state.admitted.load(Ordering::Relaxed));
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let backend = state.backend.get().ok_or_else(ApiError::loading)?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "terse",
            "max_model_len": backend.ctx_size(),
        }],
    })))
}

/// A body the server could not read (over the 16 MiB limit, a broken upload).
type Body = Result<Bytes, BytesRejection>;

async fn chat(State(state): State<Arc<AppState>>, body: Body) -> Response {
    respond(state, Endpoint::Chat, body).await
}

async fn completions(State(state): State<Arc<AppState>>, body: Body) -> Response {
    respond(state, Endpoint::Completions, body).await
}

async fn respond(state: Arc<AppState>, endpoint: Endpoint, body: Body) -> Response {
    let result = match body {
        Ok(body) => run(&state, endpoint, &body).await,
        Err(rejection) => Err(ApiError {
            status: rejection.status(),
            ..ApiError::invalid(rejection.body_text())
        }),
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    metrics::request(endpoint.name(), response.status().as_u16());
    response
}

async fn run(state: &Arc<AppState>, endpoint: Endpoint, body: &[u8]) -> Result<Response, ApiError> {
    let backend = state.backend.get().ok_or_else(ApiError::loading)?.clone();
    let mut plan = api::plan(endpoint, body, &state.model_name, &state.defaults)?;
    backend.check(&mut plan)?;
    let admission = Admission::take(state, plan.n)?;
    if let Some(proxy) = backend.pass_through(&plan) {
        return proxy.forward(endpoint, body, admission).await;
    }
    let envelope = Envelope::new(&plan);
    let events = launch(backend, &plan, admission);
    if plan.stream {
        Ok(stream(envelope, plan, events).into_response())
    } else {
        whole(envelope, &plan, events)
            .await
            .map(IntoResponse::into_response)
    }
}

/// Sequences admitted to the engine; given back when the last choice's thread ends.
struct Admission {
    state: Arc<AppState>,
    sequences: usize,
}

impl Admission {
    /// Admits `n` sequences, or a 429 when the running batch and the waiting queue are
    /// full.
    fn take(state: &Arc<AppState>, n: usize) -> Result<Arc<Admission>, ApiError> {
        let limit = state.max_sequences + state.max_queue;
        state
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + n <= limit.max(n)).then_some(now + n)
            })
            .map_err(|_| ApiError::queue_full(state.max_queue))?;
        Ok(Arc::new(Admission {
            state: state.clone(),
            sequences: n,
        }))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.state
            .admitted
            .fetch_sub(self.sequences, Ordering::AcqRel);
    }
}

/// What the choices' threads report.
enum Event {
    Piece {
        choice: usize,
        kind: PieceKind,
        text: String,
        /// The tokens that end in this piece, when the request asked for logprobs.
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        choice: usize,
        result: Box<Result<Completion, ApiError>>,
    },
}

/// Runs the choices on blocking threads: on the local engine `n > 1` choices run
/// together as siblings that fork the prompt's KV cache instead of prefilling it n
/// times; through a proxy each choice is its own upstream request, all at once.
fn launch(
    backend: Served,
    plan: &Plan,
    admission: Arc<Admission>,
) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let strategy = plan.request.strategy.to_string();
    let choices: Vec<(usize, CompletionRequest)> =
        (0..plan.n).map(|c| (c, plan.choice(c))).collect();
    let groups: Vec<Vec<(usize, CompletionRequest)>> = match backend {
        Served::Local(_) => vec![choices],
        Served::Proxy(_) => choices.into_iter().map(|c| vec![c]).collect(),
    };
    for group in groups {
        let (tx, backend, admission, strategy) = (
            tx.clone(),
            backend.clone(),
            admission.clone(),
            strategy.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let (indices, requests): (Vec<usize>, Vec<CompletionRequest>) =
                group.into_iter().unzip();
            let mut last: Vec<Option<Instant>> = vec![None; requests.len()];
            let pieces = tx.clone();
            let results = backend.complete(&requests, &mut |i, kind, text, logprobs| {
                let now = Instant::now();
                match last[i] {
                    None => metrics::first_token((now - start).as_secs_f64()),
                    Some(t) => metrics::inter_token((now - t).as_secs_f64()),
                }
                last[i] = Some(now);
                pieces
                    .send(Event::Piece {
                        choice: indices[i],
                        kind,
                        text: text.to_string(),
                        logprobs: logprobs.to_vec(),
                    })
                    .is_ok()
            });
            for (i, result) in results.into_iter().enumerate() {
                if let Ok(c) = &result {
                    metrics::completion(&strategy, c, start.elapsed().as_secs_f64());
                }
                let _ = tx.send(Event::Done {
                    choice: indices[i],
                    result: Box::new(result),
                });
            }
            drop(admission);
        });
    }
    rx
}

/// Waits for every choice and answers the whole response.
async fn whole(
    envelope: Envelope,
    plan: &Plan,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> Result<Json<Value>, ApiError> {
    let mut done: Vec<Option<Completion>> = vec![None; plan.n];
    while done.iter().any(Option::is_none) {
        match events.recv().await {
            Some(Event::Piece { .. }) => {}
            Some(Event::Done { choice, result }) => {
                done[choice] = Some((*result)?);
            }
            None => return Err(ApiError::internal("the engine stopped before answering")),
        }
    }
    let completions: Vec<Completion> = done.into_iter().flatten().collect();
    Ok(Json(envelope.response(&completions, plan.request.logprobs)))
}

/// A streamed choice's log-probabilities: how many went out, where the text of the
/// next one starts, and those waiting for a piece with text.
#[derive(Clone, Default)]
struct TokenStream {
    sent: usize,
    text_offset: usize,
    pending: Vec<TokenLogprob>,
}

impl TokenStream {
    /// The pending tokens and the text offset of the first, marked as sent.
    fn take(&mut self) -> (Vec<TokenLogprob>, usize) {
        let tokens = std::mem::take(&mut self.pending);
        let offset = self.text_offset;
        self.sent += tokens.len();
        self.text_offset += tokens.iter().map(|t| t.text.len()).sum::<usize>();
        (tokens, offset)
    }
}

/// Streams the choices as server-sent events, as they are decoded; with logprobs, each
/// chunk carries those of the tokens its text completes.
fn stream(
    envelope: Envelope,
    plan: Plan,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> impl IntoResponse {
    let (out, body) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let send = |value: Value| {
            let out = out.clone();
            async move {
                out.send(Ok(SseEvent::default().data(value.to_string())))
                    .await
                    .is_ok()
            }
        };
        let usage = plan.include_usage;
        // The role goes in each choice's first delta, alone.
        for choice in 0..plan.n {
            let first = match envelope.endpoint {
                Endpoint::Chat => json!({"role": "assistant", "content": ""}),
                Endpoint::Completions => json!({"content": ""}),
            };
            if !send(envelope.delta_chunk(choice, first, usage)).await {
                return;
            }
        }
        // Leading whitespace is trimmed as the whole response trims it.
        let mut started = vec![[false; 2]; plan.n];
        let mut done: Vec<Option<Completion>> = vec![None; plan.n];
        // Per choice: the log-probabilities sent, and those of pieces with no text
        // left after trimming, which go with the next piece.
        let mut logprobs = vec![TokenStream::default(); plan.n];
        let want_logprobs = plan.request.logprobs;
        while done.iter().any(Option::is_none) {
            match events.recv().await {
                Some(Event::Piece {
                    choice,
                    kind,
                    text,
                    logprobs: tokens,
                }) => {
                    let (slot, field) = match kind {
                        PieceKind::Reasoning => (0, "reasoning_content"),
                        PieceKind::Content => (1, "content"),
                    };
                    let text = if started[choice][slot] {
                        text.as_str()
                    } else {
                        text.trim_start()
                    };
                    logprobs[choice].pending.extend(tokens);
                    // With tools the answer goes whole at the end, its calls parsed
                    // out (their text is not content); the reasoning still streams.
                    if text.is_empty() || (!envelope.tools.is_empty() && kind == PieceKind::Content)
                    {
                        continue;
                    }
                    started[choice][slot] = true;
                    let mut delta = json!({ field: text });
                    if kind == PieceKind::Reasoning {
                        delta["reasoning"] = json!(text);
                    }
                    let mut chunk = envelope.delta_chunk(choice, delta, usage);
                    if want_logprobs {
                        let tokens = logprobs[choice].take();
                        chunk["choices"][0]["logprobs"] =
                            envelope.logprobs(&tokens.0, true, tokens.1);
                    }
                    if !send(chunk).await {
                        return;
                    }
                }
                Some(Event::Done { choice, result }) => match *result {
                    Ok(c) => {
                        let mut called = false;
                        if !envelope.tools.is_empty() {
                            let (content, calls) = envelope.answer(&c.text);
                            called = !calls.is_empty();
                            let mut deltas = Vec::new();
                            if content.as_str().is_some_and(|t| !t.is_empty()) {
                                deltas.push(json!({ "content": content }));
                            }
                            if called {
                                let calls: Vec<Value> = calls
                                    .into_iter()
                                    .enumerate()
                                    .map(|(k, mut call)| {
                                        call["index"] = json!(k);
                                        call
                                    })
                                    .collect();
                                deltas.push(json!({ "tool_calls": calls }));
                            }
                            for delta in deltas {
                                if !send(envelope.delta_chunk(choice, delta, usage)).await {
                                    return;
                                }
                            }
                        }
                        let streamed = logprobs[choice].sent;
                        let mut chunk =
                            envelope.finish_chunk(choice, &c, want_logprobs, streamed, usage);
                        if called {
                            chunk["choices"][0]["finish_reason"] = json!("tool_calls");
                        }
                        if !send(chunk).await {
                            return;
                        }
                        done[choice] = Some(c);
                    }
                    Err(error) => {
                        let _ = send(error.body()).await;
                        let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
                        return;
                    }
                },
                None => return,
            }
        }
        if usage {
            let completions: Vec<Completion> = done.into_iter().flatten().collect();
            if !send(envelope.usage_chunk(&completions)).await {
                return;
            }
        }
        let _ = out.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(body)).keep_alive(KeepAlive::default())
}
