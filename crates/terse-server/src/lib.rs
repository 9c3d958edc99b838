//! `terse serve`: an OpenAI-compatible HTTP server over the local engine (or in front
//! of another OpenAI-compatible server, see [`Upstream`]), with the reasoning
//! controllers selectable per request.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /health` (503 while the model loads, 200 after) and `GET /metrics`
//! (Prometheus: requests running and waiting, token counters, latency histograms,
//! terse's probe, injected and cost tokens and stop reasons by strategy). With an API key, `/v1/*` needs
//! `Authorization: Bearer KEY`; `/health` and `/metrics` stay open.
//!
//! The server listens at once and loads the model on a blocking thread (so a health
//! check sees 503, then 200). Requests map onto [`terse_reason::CompletionRequest`] in
//! one place (the `api` module); strategies are chosen by the `terse` extension
//! object, a `MODEL+strategy` suffix or `reasoning_effort` ([`strategy`]). Up to
//! `max_sequences` sequences share the engine's batch; `max_queue` more may wait, and
//! beyond that a request gets a 429. Chat requests may offer `tools` ([`tools`]).

mod api;
mod error;
mod metrics;
mod model;
mod proxy_meter;
mod response;
mod routes;
pub mod strategy;
mod tools;

pub use api::{Defaults, MAX_TOP_LOGPROBS};
pub use error::{ApiError, ServerError};
pub use model::{Model, Upstream};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port (see [`Server::local_addr`]).
    pub port: u16,
    /// The model name clients send (and `/v1/models` lists).
    pub model_name: String,
    /// Bearer key for `/v1/*`; `None` leaves the API open.
    pub api_key: Option<String>,
    /// Sequences in the engine's batch at once (what the backend was built with).
    pub max_sequences: usize,
    /// Sequences that may wait for the batch beyond those; more get a 429.
    pub max_queue: usize,
    /// Sampling and `max_tokens` for fields a request leaves out.
    pub defaults: Defaults,
}

/// Builds the model (the local engine, or the upstream of proxy mode); runs on a
/// blocking thread while the server already answers.
pub type Loader = Box<dyn FnOnce() -> Result<Model, String> + Send>;

/// A bound, not yet serving, server.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<routes::AppState>,
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let state = Arc::new(routes::AppState {
            model_name: config.model_name,
            api_key: config.api_key.filter(|k| !k.is_empty()),
            max_sequences: config.max_sequences.max(1),
            max_queue: config.max_queue,
            defaults: config.defaults,
            backend: OnceLock::new(),
            admitted: AtomicUsize::new(0),
            metrics: metrics::handle()?,
        });
        Ok(Server { listener, state })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::Serve)
    }

    /// Loads the model with `loader` while serving, until `shutdown` completes (or the
    /// model fails to load).
    pub async fn run(
        self,
        loader: Loader,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let load = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let backend = loader()?;
            tracing::info!(
                "model {} loaded in {:.1} s; ready",
                state.model_name,
                started.elapsed().as_secs_f64()
            );
            // Set once: only this task sets it.
            let _ = state.backend.set(backend.into());
            Ok::<(), String>(())
        });
        let app = routes::router(self.state);
        let serve = axum::serve(self.listener, app).with_graceful_shutdown(shutdown);
        let serving = tokio::spawn(async move { serve.await.map_err(ServerError::Serve) });
        match load.await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(ServerError::Load(message)),
            Err(join) => return Err(ServerError::Load(join.to_string())),
        }
        match serving.await {
            Ok(result) => result,
            Err(join) => Err(ServerError::Serve(std::io::Error::other(join.to_string()))),
        }
    }
}

/// Serves until Ctrl-C: builds the async runtime, binds, loads with `loader`.
pub fn serve(config: ServerConfig, loader: Loader) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        tracing::info!("listening on http://{addr} (loading the model)");
        server
            .run(loader, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}
