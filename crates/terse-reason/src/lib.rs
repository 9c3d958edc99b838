//! The seam between what asks for text and what produces it: a [`Backend`] turns chat
//! messages into a completion with token counts, on the local engine ([`LocalBackend`])
//! or on any OpenAI-compatible server ([`OpenAiBackend`]: llama.cpp's server, vLLM,
//! SGLang). Reasoning controllers build on this trait.

mod local;
mod openai;

pub use local::LocalBackend;
pub use openai::OpenAiBackend;
pub use terse_engine::ChatMessage;

use std::time::Duration;

/// Sampling knobs every backend understands.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    pub seed: u64,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// What a backend produced for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub latency: Duration,
    pub finish: Finish,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Engine(#[from] terse_engine::EngineError),
    #[error("cannot hash model file {path}: {source}")]
    Fingerprint {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("request to {url} failed: {detail}")]
    Http { url: String, detail: String },
    #[error("{url} answered with an unexpected body: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("the local engine's driver thread has stopped")]
    DriverStopped,
    #[error("cannot start the local engine's driver thread: {0}")]
    Driver(String),
    #[error("generation failed: {0}")]
    Generation(String),
}

/// Something that completes chat conversations.
pub trait Backend: Send + Sync {
    /// Identity of the model behind the backend (sha256 of the GGUF file locally; the
    /// server URL and model name remotely); part of every cache key.
    fn fingerprint(&self) -> String;

    /// The prompt exactly as the model will see it. A remote server renders its own
    /// template, so it returns a canonical JSON of the messages instead.
    fn render(&self, messages: &[ChatMessage]) -> Result<String, BackendError>;

    fn complete(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
    ) -> Result<Completion, BackendError>;
}
