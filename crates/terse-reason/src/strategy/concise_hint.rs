//! `concise-hint`: inject a short hint into the reasoning on a schedule that adapts
//! to its length (ConciseHint). The first hint opens the answer (before its first
//! token); the next comes after τ = min(`max_interval`, `first_interval` +
//! `growth` · length) more tokens, at the next sentence or clause boundary, so the
//! hint never splits a phrase. Hints are hidden: the model reads them, the answer
//! returned does not contain them, and their tokens are counted as injected.

use super::{Controller, Decisions, Phase, TokenView, Trace};
use serde::{Deserialize, Serialize};
use terse_engine::SteeringReserve;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HintOptions {
    /// The hint, written as the model's own words.
    pub hint: String,
    /// Also open the answer with the hint.
    pub at_start: bool,
    /// Tokens before the first hint inside the reasoning (τ at length 0).
    pub first_interval: usize,
    /// How much τ grows per token of reasoning so far.
    pub growth: f32,
    /// Largest τ.
    pub max_interval: usize,
    /// Most hints injected inside the reasoning.
    pub max_hints: usize,
}

impl Default for HintOptions {
    /// ConciseHint's schedule: τ = min(1024, 128 + 0.2 · length).
    fn default() -> Self {
        HintOptions {
            hint: " (I will be concise: short steps, no restating, then the boxed answer.) ".into(),
            at_start: true,
            first_interval: 128,
            growth: 0.2,
            max_interval: 1024,
            max_hints: 8,
        }
    }
}

pub struct ConciseHint {
    options: HintOptions,
    /// Reasoning tokens at which the next hint is due.
    next_at: usize,
    hints: usize,
}

impl ConciseHint {
    pub fn new(options: &HintOptions) -> Self {
        ConciseHint {
            next_at: options.first_interval,
            options: options.clone(),
            hints: 0,
        }
    }

    fn interval(&self, length: usize) -> usize {
        let grown = self.options.first_interval as f32 + self.options.growth * length as f32;
        (grown as usize).min(self.options.max_interval).max(1)
    }
}

/// A sentence or clause has just ended.
pub(crate) fn at_boundary(piece: &str) -> bool {
    let trimmed = piece.trim_end_matches(' ');
    trimmed.ends_with(['.', ',', ';', ':', '\n']) || (piece.ends_with('\n'))
}

impl Controller for ConciseHint {
    fn name(&self) -> &'static str {
        "concise-hint"
    }

    fn reserve(&self) -> SteeringReserve {
        SteeringReserve {
            // Bytes bound tokens.
            injected_tokens: (self.options.max_hints + 1) * self.options.hint.len(),
            ..SteeringReserve::default()
        }
    }

    fn assistant_prefix(&self) -> Option<String> {
        self.options
            .at_start
            .then(|| self.options.hint.trim_start().to_string())
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if trace.phase != Phase::Reasoning
            || token.is_end_of_generation
            || self.hints >= self.options.max_hints
            || trace.reasoning_tokens < self.next_at
            || !at_boundary(token.piece)
        {
            return;
        }
        self.hints += 1;
        self.next_at = trace.reasoning_tokens + self.interval(trace.reasoning_tokens);
        out.event(
            "hint",
            Some(format!("at {} reasoning tokens", trace.reasoning_tokens)),
            None,
        );
        out.inject(self.options.hint.clone(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Format;

    #[test]
    fn hints_follow_the_adaptive_schedule_at_boundaries() {
        let mut h = ConciseHint::new(&HintOptions::default());
        let mut at = Vec::new();
        for n in 1..=600 {
            let piece = if n % 10 == 0 { ".\n" } else { " word" };
            let trace = Trace {
                format: Format::Plain,
                phase: Phase::Reasoning,
                text: String::new(),
                sampled: n,
                reasoning_tokens: n,
                ids: None,
            };
            let token = TokenView {
                piece,
                logprob: None,
                entropy: None,
                top_logprobs: &[],
                is_end_of_generation: false,
            };
            let mut out = Decisions::default();
            h.on_token(&trace, &token, &mut out);
            if out
                .drain()
                .any(|d| matches!(d, crate::strategy::Decision::Inject { visible: false, .. }))
            {
                at.push(n);
            }
        }
        // 128 → first boundary at 130; τ(130) = 154 → 284 → 290; τ(290) = 186 → 476 → 480.
        assert_eq!(at, vec![130, 290, 480]);
    }

    #[test]
    fn boundaries_are_ends_of_sentences_and_clauses() {
        assert!(at_boundary("."));
        assert!(at_boundary(", "));
        assert!(at_boundary("\n\n"));
        assert!(!at_boundary(" the"));
    }
}
