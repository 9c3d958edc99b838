//! `stop-boost`: make ending reasoning more likely at sentence boundaries, or end it
//! when the model is close to ending it itself (ThinkBrake; the stopping boosts of
//! "Making Small Language Models Efficient Reasoners").
//!
//! The targets are the tokens that end reasoning: `</think>` (and the end of
//! generation) with a think section, the first token of the answer box otherwise.
//! Right after a sentence ends, their logits get `ln(boost)` added (their probability
//! multiplied by `boost`). With `margin`, when a target's log-probability is within
//! `margin` nats of the most likely token's at such a boundary, reasoning is ended
//! there and the answer forced.

use super::concise_hint::at_boundary;
use super::{
    forced_answer_reserve, Controller, Decisions, ForcedAnswer, Needs, Phase, TokenView, Trace,
};
use serde::{Deserialize, Serialize};
use terse_engine::SteeringReserve;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StopBoostOptions {
    /// Factor on the targets' probability at a sentence boundary (1 = none).
    pub boost: f32,
    /// End reasoning when a target is within this many nats of the top token.
    pub margin: Option<f32>,
    /// No boost before this many reasoning tokens.
    pub min_tokens: usize,
    /// Most tokens of a forced answer.
    pub answer_tokens: usize,
}

impl Default for StopBoostOptions {
    fn default() -> Self {
        StopBoostOptions {
            boost: 4.0,
            margin: None,
            min_tokens: 32,
            answer_tokens: 16,
        }
    }
}

pub struct StopBoost {
    options: StopBoostOptions,
    /// The last piece ended a sentence.
    at_boundary: bool,
    close_enough: bool,
    forced: Option<ForcedAnswer>,
}

impl StopBoost {
    pub fn new(options: &StopBoostOptions) -> Self {
        StopBoost {
            options: options.clone(),
            at_boundary: false,
            close_enough: false,
            forced: None,
        }
    }
}

impl Controller for StopBoost {
    fn name(&self) -> &'static str {
        "stop-boost"
    }

    fn needs(&self) -> Needs {
        Needs {
            logits: true,
            ..Needs::default()
        }
    }

    fn reserve(&self) -> SteeringReserve {
        SteeringReserve {
            injected_tokens: forced_answer_reserve(0),
            ..SteeringReserve::default()
        }
    }

    fn adjust_logits(&mut self, trace: &Trace, logits: &mut [f32]) {
        let Some(ids) = &trace.ids else {
            return;
        };
        if self.forced.is_some()
            || !self.at_boundary
            || trace.phase != Phase::Reasoning
            || trace.reasoning_tokens < self.options.min_tokens
        {
            return;
        }
        let targets = ids.stop_targets(trace.format);
        if let Some(margin) = self.options.margin {
            let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            self.close_enough = targets
                .iter()
                .filter_map(|&t| logits.get(t as usize))
                .any(|&l| top - l <= margin);
        }
        let add = self.options.boost.max(f32::MIN_POSITIVE).ln();
        for &t in targets {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += add;
            }
        }
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if let Some(forced) = &mut self.forced {
            if forced.on_token(token.piece) {
                out.stop("stop-boost");
            }
            return;
        }
        if std::mem::take(&mut self.close_enough) && trace.phase == Phase::Reasoning {
            out.event(
                "stop-boost",
                Some(format!(
                    "margin reached at {} reasoning tokens",
                    trace.reasoning_tokens
                )),
                None,
            );
            out.replace_token(trace.format.exit_text());
            self.forced = Some(ForcedAnswer::new(self.options.answer_tokens));
            return;
        }
        self.at_boundary = at_boundary(token.piece) && token.piece.contains(['.', '\n']);
    }
}
