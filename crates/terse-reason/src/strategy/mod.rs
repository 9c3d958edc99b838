//! Reasoning strategies: small state machines over the token stream of one sequence.
//!
//! A [`StrategySpec`] names a chain of stages (`loop-guard+early-exit`), each with
//! its options. Prompt stages (`be-brief`, `chain-of-draft`, `concise-exemplars`)
//! change the conversation before it is rendered; steering stages become
//! [`Controller`]s that see every token and decide, through [`Decisions`], to inject
//! text, fork a probe, or stop. The [`Runner`] drives the chain for one request: the
//! local backend hands it to the engine as its steering object, the remote backend
//! feeds it streamed text. Controllers share one [`Trace`] (the text so far, whether
//! reasoning has ended) and know nothing of engines, HTTP or datasets.
//!
//! The end of reasoning is `</think>` when the model writes a think section (R1-distill
//! and Qwen3 style), otherwise the answer cue `\boxed{`. Strategies that end reasoning
//! early close the think section when there is one and append the answer cue, then
//! let the model write the answer within a small budget ("answer forcing").
//!
//! Sources: `budget` (s1's budget forcing, llama.cpp's `--reasoning-budget`),
//! `budget-forcing` (s1's "Wait"), `early-exit` (Dynasor/Certaindex probes, with
//! agreement checked and hedging tested on whole words), `stop-boost` (ThinkBrake,
//! "Making Small Language Models Efficient Reasoners"), `concise-hint` (ConciseHint),
//! `concise-exemplars` (C3oT), `chain-of-draft` (Chain of Draft), `loop-guard`,
//! `verify` (Solve-Detect-Verify, FlexiVe).

pub mod answer;
mod budget;
mod concise_hint;
mod early_exit;
mod loop_guard;
mod prompts;
mod runner;
mod spec;
mod stop_boost;
mod verify;

pub use prompts::EXEMPLARS;
pub use runner::{PieceSink, Runner, RunnerOutput, TokenIds};
pub use spec::{Stage, StrategySpec};

use serde::{Deserialize, Serialize};
use terse_engine::{ProbeResult, SteeringReserve, TopLogprob};

/// Errors in a strategy's name, options or configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StrategyError {
    #[error("unknown strategy '{name}'; valid: {valid}")]
    UnknownStrategy { name: String, valid: String },
    #[error("strategy '{strategy}': {message}")]
    BadOption { strategy: String, message: String },
    #[error("option '{option}' = {value} is out of range for '{strategy}': {range}")]
    OutOfRange {
        strategy: String,
        option: String,
        value: String,
        range: String,
    },
    #[error("option '{option}' matches no strategy in '{chain}' (give it as STRATEGY.{option})")]
    UnclaimedOption { option: String, chain: String },
    #[error("option '{option}' is for '{stage}', which is not in '{chain}'")]
    StageNotInChain {
        option: String,
        stage: String,
        chain: String,
    },
    #[error("option '{option}' belongs to several strategies in '{chain}'; give it as STRATEGY.{option}")]
    AmbiguousOption { option: String, chain: String },
    #[error("--strategy-opt '{0}' is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("strategy configuration: {0}")]
    Config(String),
    #[error(
        "strategy '{strategy}' steers or writes into the answer, so it cannot be combined \
         with a constrained answer (a JSON response format or a forced tool call): use \
         strategy none or a prompt-only strategy"
    )]
    Constrained { strategy: String },
    #[error("strategy '{strategy}' needs {what}, which the {backend} backend cannot give")]
    Unsupported {
        strategy: String,
        what: &'static str,
        backend: String,
    },
}

/// How the model separates reasoning from its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FormatChoice {
    /// A think section when the prompt opens one or the output starts with one.
    #[default]
    Auto,
    /// `<think> … </think>` then the answer.
    Think,
    /// Reasoning then `\boxed{…}`.
    Plain,
}

/// The reasoning format of one running sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Think,
    Plain,
}

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";
/// What every answer-forcing strategy writes before the answer; the eval's answer
/// extraction reads `\boxed{…}`.
pub const ANSWER_CUE: &str = "Final answer: \\boxed{";

impl Format {
    /// Text that ends reasoning now and opens the answer box.
    pub fn exit_text(self) -> String {
        match self {
            Format::Think => format!("\n{THINK_CLOSE}\n\n{ANSWER_CUE}"),
            Format::Plain => format!("\n\n{ANSWER_CUE}"),
        }
    }
}

/// Whether the sequence is still reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Reasoning,
    Answer,
}

/// What every controller of a sequence can read.
#[derive(Debug, Clone)]
pub struct Trace {
    pub format: Format,
    pub phase: Phase,
    /// Everything the model has seen after the prompt: its tokens and injected text
    /// (hidden hints included).
    pub text: String,
    /// Tokens sampled so far (the answer's output tokens).
    pub sampled: usize,
    /// Of those, while reasoning.
    pub reasoning_tokens: usize,
    /// Token ids of the backend's vocabulary, when it has one (local engine).
    pub ids: Option<TokenIds>,
}

/// A sampled token as a controller sees it.
#[derive(Debug, Clone, Copy)]
pub struct TokenView<'a> {
    /// Its text (empty for an end-of-generation token).
    pub piece: &'a str,
    pub logprob: Option<f32>,
    pub entropy: Option<f32>,
    pub top_logprobs: &'a [TopLogprob],
    pub is_end_of_generation: bool,
}

/// What a controller decides after a token or a probe result.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Feed `text` next, as if the model had written it. Hidden text never reaches
    /// the answer; `replace_token` drops the token just sampled.
    Inject {
        text: String,
        visible: bool,
        replace_token: bool,
    },
    /// Fork a probe: prefill `text` on a copy of the sequence, decode up to
    /// `max_tokens` greedily or until a `stop` string.
    Probe {
        tag: u64,
        text: String,
        max_tokens: usize,
        stop: Vec<String>,
    },
    /// End now; `reason` becomes the completion's stop reason.
    Stop { reason: String },
    /// End now with `text` appended to the answer, without decoding it.
    Finish { text: String, reason: String },
    /// Record something in the completion's events.
    Event {
        kind: String,
        detail: Option<String>,
        logprob: Option<f32>,
    },
}

/// The decisions of one controller for one token; filled through its methods.
#[derive(Debug, Default)]
pub struct Decisions {
    items: Vec<Decision>,
}

impl Decisions {
    pub fn inject(&mut self, text: impl Into<String>, visible: bool) {
        self.items.push(Decision::Inject {
            text: text.into(),
            visible,
            replace_token: false,
        });
    }

    pub fn replace_token(&mut self, text: impl Into<String>) {
        self.items.push(Decision::Inject {
            text: text.into(),
            visible: true,
            replace_token: true,
        });
    }

    pub fn probe(&mut self, tag: u64, text: impl Into<String>, max_tokens: usize, stop: &[&str]) {
        self.items.push(Decision::Probe {
            tag,
            text: text.into(),
            max_tokens,
            stop: stop.iter().map(|s| s.to_string()).collect(),
        });
    }

    pub fn stop(&mut self, reason: impl Into<String>) {
        self.items.push(Decision::Stop {
            reason: reason.into(),
        });
    }

    pub fn finish(&mut self, text: impl Into<String>, reason: impl Into<String>) {
        self.items.push(Decision::Finish {
            text: text.into(),
            reason: reason.into(),
        });
    }

    pub fn event(&mut self, kind: &str, detail: Option<String>, logprob: Option<f32>) {
        self.items.push(Decision::Event {
            kind: kind.into(),
            detail,
            logprob,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, Decision> {
        self.items.drain(..)
    }
}

/// What a controller needs from its backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// To change logits before sampling.
    pub logits: bool,
    /// The prompt's final hidden state.
    pub hidden_states: bool,
}

/// One steering stage of a strategy, for one sequence.
pub trait Controller: Send {
    /// The stage's name, as in a strategy chain.
    fn name(&self) -> &'static str;

    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// KV cache this stage may need beyond the prompt and `max_tokens`.
    fn reserve(&self) -> SteeringReserve {
        SteeringReserve::default()
    }

    /// Hidden text the answer starts with (a hint before the first token).
    fn assistant_prefix(&self) -> Option<String> {
        None
    }

    fn adjust_logits(&mut self, _trace: &Trace, _logits: &mut [f32]) {}

    /// A token was sampled; `trace` already holds it.
    fn on_token(&mut self, _trace: &Trace, _token: &TokenView<'_>, _out: &mut Decisions) {}

    /// A probe this stage started has finished (its tag as given).
    fn on_probe(&mut self, _trace: &Trace, _probe: &ProbeResult, _out: &mut Decisions) {}
}

/// Answer forcing, shared by the strategies that end reasoning early: after the exit
/// text (which opens `\boxed{`) the model writes at most `budget` tokens, and the
/// sequence stops as soon as the box closes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForcedAnswer {
    budget: usize,
    used: usize,
    /// Open braces: the cue opened one.
    depth: usize,
}

impl ForcedAnswer {
    pub(crate) fn new(budget: usize) -> Self {
        ForcedAnswer {
            budget,
            used: 0,
            depth: 1,
        }
    }

    /// Counts a token of the answer; true when the answer is complete.
    pub(crate) fn on_token(&mut self, piece: &str) -> bool {
        self.used += 1;
        for c in piece.chars() {
            match c {
                '{' => self.depth += 1,
                '}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        self.depth == 0 || self.used >= self.budget
    }
}

/// What a stage that forks one probe at most every `every` tokens needs: probes of
/// `probe_text_len` bytes of text (bytes bound tokens) decoding `probe_tokens`.
pub(crate) fn probe_reserve(
    every: usize,
    probe_text_len: usize,
    probe_tokens: usize,
) -> SteeringReserve {
    SteeringReserve {
        injected_tokens: 0,
        // A probe lives for its text's pass and its decoded tokens.
        live_probes: (probe_tokens + 2).div_ceil(every.max(1)) + 1,
        probe_tokens: probe_text_len + probe_tokens,
    }
}

/// Positions the exit text and a forced answer of `answer_tokens` need.
pub(crate) fn forced_answer_reserve(answer_tokens: usize) -> usize {
    // The exit text is under 16 tokens in every vocabulary here; bytes bound tokens.
    Format::Think.exit_text().len() + answer_tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forced_answer_ends_when_the_box_closes_or_the_budget_is_spent() {
        let mut f = ForcedAnswer::new(8);
        assert!(!f.on_token("7"));
        assert!(!f.on_token("2"));
        assert!(f.on_token("}"));
        let mut nested = ForcedAnswer::new(8);
        assert!(!nested.on_token("\\frac{"));
        assert!(!nested.on_token("1}"));
        assert!(nested.on_token("}"));
        let mut long = ForcedAnswer::new(2);
        assert!(!long.on_token("a"));
        assert!(long.on_token("b"));
    }

    #[test]
    fn exit_text_closes_the_think_section_only_when_there_is_one() {
        assert!(Format::Think.exit_text().contains(THINK_CLOSE));
        assert!(!Format::Plain.exit_text().contains(THINK_CLOSE));
        assert!(Format::Plain.exit_text().ends_with("\\boxed{"));
    }
}
