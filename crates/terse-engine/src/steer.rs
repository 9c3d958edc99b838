//! The steering seam: how a controller outside the engine steers one generation
//! token by token, without the engine knowing anything of strategies.
//!
//! A [`GenerationRequest`](crate::GenerationRequest) may carry a [`Steering`] object.
//! The [`BatchScheduler`](crate::BatchScheduler) calls it on the engine's driver thread:
//!
//! 1. once, after the prompt's forward pass, with the final hidden state of the
//!    prompt's last position if [`Steering::wants_prompt_hidden`] said so;
//! 2. before each token is sampled, with the logits, which it may change
//!    ([`Steering::adjust_logits`]: boost or forbid tokens);
//! 3. after each token is sampled ([`Steering::on_token`]), with the token, its text
//!    piece, log-probability, entropy, optionally the top-k log-probabilities, and its
//!    position. An end-of-generation token is reported too, before the sequence ends,
//!    so the steering can replace it;
//! 4. when a probe it started finishes ([`Steering::on_probe`]).
//!
//! Steps 3 and 4 answer with [`Action`]s pushed into a buffer: inject text (prefilled
//! on the next step, never sampled), start a probe, or stop. No action means continue.
//!
//! A probe is a forked sequence that shares its parent's KV cache up to the fork point
//! (copy-on-write, nothing re-prefilled). It is forked right after the parent's token
//! that asked for it has been written to the cache, so it prefills only its own probe
//! text, then decodes at most `max_tokens` tokens greedily (or until a stop string or
//! an end-of-generation token). It runs in the same packed forward passes as every
//! other sequence, reports back and is freed. It never changes the parent's tokens.
//!
//! Everything the scheduler decides here depends only on the request itself (never on
//! what else is in the batch or how full the cache is), so a steered request gives the
//! same tokens batched as alone.

/// Why a steering object stopped its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCause(pub String);

/// One of the most likely tokens at a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopLogprob {
    pub token: u32,
    pub logprob: f32,
}

/// A sampled token, as the steering object sees it.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent<'a> {
    pub token: u32,
    /// The complete UTF-8 text this token adds (empty while a character is split
    /// across tokens; the rest arrives with a later token).
    pub piece: &'a str,
    /// log p(token) under the model's raw distribution.
    pub logprob: f32,
    /// Entropy (nats) of the model's raw next-token distribution at this step.
    pub entropy: f32,
    /// The most likely tokens, most likely first; empty unless
    /// [`Steering::top_logprobs`] asked for some.
    pub top_logprobs: &'a [TopLogprob],
    /// Where the token goes in the sequence (its KV cache position).
    pub position: usize,
    /// Tokens sampled on this sequence so far, this one included.
    pub sampled: usize,
    /// The token ends generation: unless an action replaces it, the sequence ends.
    pub is_end_of_generation: bool,
}

/// A forked look-ahead that never changes its parent.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    /// Chosen by the steering object; comes back in the [`ProbeResult`].
    pub tag: u64,
    /// Text prefilled on the fork (special-token text such as `</think>` is parsed).
    pub text: String,
    /// Most tokens decoded (greedily) after the probe text.
    pub max_tokens: usize,
    /// Decoding ends once the probe's decoded text contains one of these.
    pub stop: Vec<String>,
}

/// Why a probe stopped decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEnd {
    StopString,
    EndOfGeneration,
    MaxTokens,
    /// The parent's context has no room for the probe text; nothing ran.
    NoRoom,
}

/// What a probe produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub tag: u64,
    /// Length of the parent sequence the probe was forked from.
    pub fork_position: usize,
    /// Decoded text (up to and including the stop string that ended it).
    pub text: String,
    pub tokens: Vec<u32>,
    /// log p of each decoded token.
    pub logprobs: Vec<f32>,
    /// Probe text tokens prefilled on the fork.
    pub prefill_tokens: usize,
    pub end: ProbeEnd,
}

/// What a steering object asks for after a token or a probe result.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Feed `text` on the next step, as if the model had written it (special-token
    /// text is parsed). With `replace_token`, the token just sampled is dropped first
    /// (never fed to the model): that is how an end of reasoning is replaced by "Wait".
    Inject { text: String, replace_token: bool },
    /// Fork a probe at the current end of the sequence.
    Probe(ProbeRequest),
    /// End the sequence now.
    Stop(StopCause),
}

/// How many positions of KV cache a steered request may need beyond its prompt and
/// `max_tokens`, reserved when it is admitted so it never finds the cache full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteeringReserve {
    /// Most tokens injected over the whole generation.
    pub injected_tokens: usize,
    /// Most probes alive at once (more are answered [`ProbeEnd::NoRoom`]).
    pub live_probes: usize,
    /// Most positions one probe holds (its text plus its decoded tokens).
    pub probe_tokens: usize,
}

/// A controller of one generation; see the module documentation. Every method has a
/// do-nothing default, and a steering object that does nothing changes nothing.
pub trait Steering: Send + std::any::Any {
    /// KV cache positions this request may need beyond its prompt and `max_tokens`.
    fn reserve(&self) -> SteeringReserve {
        SteeringReserve::default()
    }

    /// Ask for the final hidden state of the prompt's last position.
    fn wants_prompt_hidden(&self) -> bool {
        false
    }

    /// The final hidden state (after the last norm) of the prompt's last position.
    fn on_prompt_hidden(&mut self, _hidden: &[f32]) {}

    /// How many top log-probabilities each [`TokenEvent`] should carry.
    fn top_logprobs(&self) -> usize {
        0
    }

    /// Change the next token's logits before sampling.
    fn adjust_logits(&mut self, _logits: &mut [f32]) {}

    /// A token was sampled.
    fn on_token(&mut self, _event: &TokenEvent<'_>, _actions: &mut Vec<Action>) {}

    /// Injected text was tokenized into `tokens` and will be fed on the next step.
    fn on_injected(&mut self, _tokens: &[u32]) {}

    /// A probe this object started has finished.
    fn on_probe(&mut self, _result: &ProbeResult, _actions: &mut Vec<Action>) {}
}
