//! Reasoning controllers and the backends they drive.
//!
//! One request type ([`CompletionRequest`]) and one result type ([`Completion`]) flow
//! from the command line, the server and the eval harness through here to an engine.
//! A [`Backend`] runs a request: the local engine ([`LocalBackend`], where strategies
//! steer every token through the engine's steering seam) or any OpenAI-compatible
//! server ([`OpenAiBackend`]: llama.cpp's server, vLLM, SGLang, where the same
//! strategies run over streamed text). The strategies live in [`strategy`].

pub mod adaptive;
pub mod consistency;
pub mod constraint;
pub mod difficulty;
pub mod json_schema;
mod local;
mod openai;
pub mod program;
pub mod python_subset;
pub mod refine;
#[cfg(test)]
mod scripted;
pub mod strategy;

pub use constraint::{Grammar, JsonItem, JsonKind, JsonType, Segment};
pub use json_schema::SchemaError;
pub use local::{EngineLoad, LocalBackend};
pub use openai::OpenAiBackend;
pub use strategy::{StrategyError, StrategySpec};
pub use terse_engine::{ChatMessage, SamplerConfig};

use serde::{Deserialize, Serialize};

/// What the model is asked to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text, continued as is (special-token text is parsed).
    Text(String),
}

/// One request, as every caller sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    pub sampling: SamplerConfig,
    /// Most tokens decoded on the answer's sequence.
    pub max_tokens: usize,
    /// The answer ends before the first of these strings (which is not returned).
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub strategy: StrategySpec,
    /// Return each output token's log-probability.
    #[serde(default)]
    pub logprobs: bool,
    /// With `logprobs`, this many most likely alternatives per token.
    #[serde(default)]
    pub top_logprobs: usize,
    /// More variables for the chat template (`chat_template_kwargs`, such as
    /// `enable_thinking`); sent on to a remote server.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub template_kwargs: serde_json::Map<String, serde_json::Value>,
    /// What the answer must be (a JSON object, a forced tool call); decoding is
    /// constrained to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Grammar>,
}

impl CompletionRequest {
    /// A chat request with the plain (unsteered) strategy.
    pub fn chat(messages: Vec<ChatMessage>, sampling: SamplerConfig, max_tokens: usize) -> Self {
        CompletionRequest {
            prompt: Prompt::Chat(messages),
            sampling,
            max_tokens,
            stop: Vec::new(),
            strategy: StrategySpec::default(),
            logprobs: false,
            top_logprobs: 0,
            template_kwargs: serde_json::Map::new(),
            constraint: None,
        }
    }

    /// A constrained answer is one plain trace: a strategy that writes into the
    /// answer, steers it or runs several traces would break the grammar or bypass it.
    pub fn check_constraint(&self) -> Result<(), StrategyError> {
        if self.constraint.is_some() && (self.strategy.steers() || !self.strategy.is_single_trace())
        {
            return Err(StrategyError::Constrained {
                strategy: self.strategy.to_string(),
            });
        }
        Ok(())
    }
}

/// Why a completion ended, in OpenAI's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model (or a strategy, or a stop string) ended the answer.
    Stop,
    /// `max_tokens` (or the context) was reached.
    Length,
}

/// Every token a completion cost, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (strategy-added exemplars included).
    pub prompt_tokens: u64,
    /// Of those, how many the prefix cache held (not computed).
    #[serde(default)]
    pub prompt_cached_tokens: u64,
    /// Tokens decoded on the answer's sequence.
    pub output_tokens: u64,
    /// Of those, before the end of reasoning (`</think>`, or the answer cue).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Of those, after it.
    #[serde(default)]
    pub answer_tokens: u64,
    /// Probes forked.
    #[serde(default)]
    pub probes: u64,
    /// Probe text tokens prefilled.
    #[serde(default)]
    pub probe_prefill_tokens: u64,
    /// Tokens the probes decoded.
    #[serde(default)]
    pub probe_decoded_tokens: u64,
    /// Tokens a strategy injected (hints, "Wait", answer cues) and the engine prefilled.
    #[serde(default)]
    pub injected_tokens: u64,
}

impl Usage {
    pub fn probe_tokens(&self) -> u64 {
        self.probe_prefill_tokens + self.probe_decoded_tokens
    }

    /// Everything the engine processed beyond the original prompt: decoded, probe and
    /// injected tokens. Savings are stated on this, never on output tokens alone.
    pub fn cost_tokens(&self) -> u64 {
        self.output_tokens + self.probe_tokens() + self.injected_tokens
    }

    /// Adds `other`'s decoding work (every kind but the prompt's) to this one: another
    /// trace or pass spent on the same answer.
    pub fn add_work(&mut self, other: &Usage) {
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.answer_tokens += other.answer_tokens;
        self.probes += other.probes;
        self.probe_prefill_tokens += other.probe_prefill_tokens;
        self.probe_decoded_tokens += other.probe_decoded_tokens;
        self.injected_tokens += other.injected_tokens;
    }
}

/// Something a strategy did or saw, kept with the completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyEvent {
    /// The strategy that recorded it.
    pub strategy: String,
    /// What happened: `probe`, `inject`, `exit`, `loop`, `budget`, …
    pub kind: String,
    /// Output tokens decoded when it happened.
    pub at_token: u64,
    /// The probe's answer, the injected text, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The log-probability the event rests on: a probe answer's mean token
    /// log-probability, a program's least sure token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f32>,
    /// A probe's tokens: prefilled and decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_tokens: Option<[u64; 2]>,
}

/// The log-probability of one output token, with its alternatives when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub text: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<(String, f32)>,
}

/// What a backend produced for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The answer as the user sees it (hidden hints removed, the think section
    /// included when the model wrote one).
    pub text: String,
    /// The think section's content, when the model wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    pub usage: Usage,
    pub finish: Finish,
    /// Why it ended: `eos`, `length`, `stop`, or the strategy's reason (`budget`,
    /// `early-exit`, `loop`, …).
    pub stop_reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StrategyEvent>,
    pub latency_s: f64,
    /// Where the local engine's time went; `None` on a remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_time: Option<EngineTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
}

/// This completion's share of the local engine's batched forward passes: each pass's
/// time split by the rows each sequence fed it. A pass costs less than linearly in its
/// rows, so the probes' share is an upper bound of what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineTime {
    /// Forward-pass seconds of the answer's sequence and its probes.
    pub forward_s: f64,
    /// The part of `forward_s` that fed the probes.
    pub probe_forward_s: f64,
}

impl EngineTime {
    /// Two passes' time together; `None` when neither ran on the local engine.
    pub fn sum(a: Option<EngineTime>, b: Option<EngineTime>) -> Option<EngineTime> {
        match (a, b) {
            (None, None) => None,
            (a, b) => {
                let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
                Some(EngineTime {
                    forward_s: a.forward_s + b.forward_s,
                    probe_forward_s: a.probe_forward_s + b.probe_forward_s,
                })
            }
        }
    }
}

/// Which part of the answer a streamed piece belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    /// Inside the think section.
    Reasoning,
    /// The answer proper (everything, on a model without a think section).
    Content,
}

/// Receives the visible text of a completion as it is decoded, with the log-probabilities
/// of the tokens that end in that piece when the request asked for them (a whole
/// completion handed over at once brings all of its tokens).
pub type Sink<'a> = &'a mut (dyn FnMut(PieceKind, &str, &[TokenLogprob]) + Send);

/// A [`Sink`] that answers whether its caller still listens (`false` cancels).
pub type ListeningSink<'a> = &'a mut (dyn FnMut(PieceKind, &str, &[TokenLogprob]) -> bool + Send);

/// A [`ListeningSink`] for several choices, each piece with its choice's index.
pub type ChoicesSink<'a> =
    &'a mut (dyn FnMut(usize, PieceKind, &str, &[TokenLogprob]) -> bool + Send);

/// What a backend can give the strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Logits before sampling (to boost or forbid tokens).
    pub logits: bool,
    /// The final hidden state of the prompt.
    pub hidden_states: bool,
    /// Per-token log-probabilities and entropies.
    pub logprobs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Engine(#[from] terse_engine::EngineError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Probe(#[from] difficulty::ProbeError),
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

/// Something that completes requests.
pub trait Backend: Send + Sync {
    /// Identity of the model behind the backend (sha256 of the GGUF file locally; the
    /// server URL and model name remotely); part of every cache key.
    fn fingerprint(&self) -> String;

    /// The prompt text exactly as the model will see it for this request (the chat
    /// template applied, strategy prompt stages included). A remote server that
    /// renders its own template gives a canonical JSON of the messages instead.
    fn render(&self, request: &CompletionRequest) -> Result<String, BackendError>;

    fn capabilities(&self) -> Capabilities;

    /// Runs the request, handing each piece of visible text to `sink` as it is decoded.
    fn complete_streaming(
        &self,
        request: &CompletionRequest,
        sink: Sink<'_>,
    ) -> Result<Completion, BackendError>;

    /// What the difficulty probe at `probe` (by default the one beside the model)
    /// predicts for this request's prompt; for `adaptive`. A backend that cannot give
    /// the prompt's hidden state says so.
    fn difficulty(
        &self,
        request: &CompletionRequest,
        probe: Option<&std::path::Path>,
    ) -> Result<adaptive::Difficulty, BackendError>;

    /// Runs the request whole: routed by difficulty ([`adaptive`]), asked for a
    /// program ([`program`]), drafted and refined ([`refine`]), drawn as several
    /// voting traces ([`consistency`], through [`Backend::complete_siblings`]), or one
    /// steered trace. Visible text reaches `sink` as it is decoded; when traces vote,
    /// drafts are refined or a program runs, once the answer is in.
    fn complete_with(
        &self,
        request: &CompletionRequest,
        sink: Sink<'_>,
    ) -> Result<Completion, BackendError> {
        request.check_constraint()?;
        if let Some(options) = request.strategy.adaptive() {
            return adaptive::complete(self, request, options, sink);
        }
        if let Some(options) = request.strategy.program() {
            return program::complete(self, request, options, sink);
        }
        if let Some(options) = request.strategy.refine() {
            return refine::complete(self, request, options, sink);
        }
        match request.strategy.consistency() {
            Some(options) => {
                let completion = consistency::complete(self, request, options)?;
                if let Some(reasoning) = &completion.reasoning {
                    sink(PieceKind::Reasoning, reasoning, &[]);
                }
                sink(PieceKind::Content, &completion.text, &completion.logprobs);
                Ok(completion)
            }
            None => self.complete_streaming(request, sink),
        }
    }

    /// Runs the request to the end ([`Backend::complete_with`], text unseen).
    fn complete(&self, request: &CompletionRequest) -> Result<Completion, BackendError> {
        self.complete_with(request, &mut |_, _, _| {})
    }

    /// Runs several requests for the same prompt (siblings: self-consistency's
    /// traces, `n > 1`), in order. A backend that can share the prompt's prefill
    /// between them runs them together; this default runs them one after another.
    fn complete_siblings(
        &self,
        requests: &[CompletionRequest],
    ) -> Result<Vec<Completion>, BackendError> {
        requests
            .iter()
            .map(|r| self.complete_streaming(r, &mut |_, _, _| {}))
            .collect()
    }
}
