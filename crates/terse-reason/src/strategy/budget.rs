//! `budget`: a hard cap on reasoning tokens, then answer forcing (s1's budget
//! forcing "maximum" side; llama.cpp's `--reasoning-budget`; the TS stopping of
//! "Making Small Language Models Efficient Reasoners").
//!
//! `budget-forcing`: s1's two-sided control. Before `min_tokens` of reasoning the
//! end of reasoning is forbidden, and where the model wanted to end, "Wait" is written
//! instead (s1's `thinking_n_ignore`, at most `max_waits` times); at `max_tokens` it
//! is cut off like `budget`.

use super::{
    forced_answer_reserve, Controller, Decisions, ForcedAnswer, Needs, Phase, TokenView, Trace,
};
use serde::{Deserialize, Serialize};
use terse_engine::SteeringReserve;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetOptions {
    /// Most reasoning tokens before the answer is forced.
    pub reasoning_tokens: usize,
    /// Most tokens of the forced answer (it ends when the box closes).
    pub answer_tokens: usize,
}

impl Default for BudgetOptions {
    fn default() -> Self {
        BudgetOptions {
            reasoning_tokens: 256,
            answer_tokens: 16,
        }
    }
}

/// Reasoning cap with answer forcing; used by `budget` and by `budget-forcing`'s max.
pub(crate) struct BudgetCap {
    name: &'static str,
    limit: usize,
    answer_tokens: usize,
    forced: Option<ForcedAnswer>,
}

impl BudgetCap {
    pub(crate) fn new(name: &'static str, limit: usize, answer_tokens: usize) -> Self {
        BudgetCap {
            name,
            limit,
            answer_tokens,
            forced: None,
        }
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if let Some(forced) = &mut self.forced {
            if forced.on_token(token.piece) {
                out.stop(self.name);
            }
            return;
        }
        if trace.phase == Phase::Reasoning && trace.reasoning_tokens >= self.limit {
            out.event(
                self.name,
                Some(format!(
                    "cut at {} reasoning tokens",
                    trace.reasoning_tokens
                )),
                None,
            );
            out.inject(trace.format.exit_text(), true);
            self.forced = Some(ForcedAnswer::new(self.answer_tokens));
        }
    }
}

pub struct Budget(BudgetCap);

impl Budget {
    pub fn new(options: &BudgetOptions) -> Self {
        Budget(BudgetCap::new(
            "budget",
            options.reasoning_tokens,
            options.answer_tokens,
        ))
    }
}

impl Controller for Budget {
    fn name(&self) -> &'static str {
        "budget"
    }

    fn reserve(&self) -> SteeringReserve {
        SteeringReserve {
            injected_tokens: forced_answer_reserve(0),
            ..SteeringReserve::default()
        }
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        self.0.on_token(trace, token, out);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForcingOptions {
    /// Reasoning tokens before which the end of reasoning is forbidden.
    pub min_tokens: usize,
    /// Most reasoning tokens before the answer is forced.
    pub max_tokens: usize,
    /// Written where the model wanted to stop early.
    pub wait: String,
    /// Most times "Wait" is written.
    pub max_waits: usize,
    /// Most tokens of the forced answer.
    pub answer_tokens: usize,
}

impl Default for ForcingOptions {
    fn default() -> Self {
        ForcingOptions {
            min_tokens: 128,
            max_tokens: 512,
            wait: " Wait,".into(),
            max_waits: 2,
            answer_tokens: 16,
        }
    }
}

pub struct BudgetForcing {
    min_tokens: usize,
    wait: String,
    waits_left: usize,
    /// The model's most likely token ended reasoning and was forbidden.
    wanted_end: bool,
    cap: BudgetCap,
}

impl BudgetForcing {
    pub fn new(options: &ForcingOptions) -> Self {
        BudgetForcing {
            min_tokens: options.min_tokens,
            wait: options.wait.clone(),
            waits_left: options.max_waits,
            wanted_end: false,
            cap: BudgetCap::new("budget-forcing", options.max_tokens, options.answer_tokens),
        }
    }
}

impl Controller for BudgetForcing {
    fn name(&self) -> &'static str {
        "budget-forcing"
    }

    fn needs(&self) -> Needs {
        Needs {
            logits: true,
            ..Needs::default()
        }
    }

    fn reserve(&self) -> SteeringReserve {
        SteeringReserve {
            injected_tokens: forced_answer_reserve(0) + self.waits_left * (self.wait.len() + 1),
            ..SteeringReserve::default()
        }
    }

    fn adjust_logits(&mut self, trace: &Trace, logits: &mut [f32]) {
        let Some(ids) = &trace.ids else {
            return;
        };
        if trace.phase != Phase::Reasoning
            || trace.reasoning_tokens >= self.min_tokens
            || self.waits_left == 0
        {
            return;
        }
        let top = terse_engine::sampler::argmax(logits);
        self.wanted_end = ids.reasoning_end(trace.format).contains(&top);
        for &id in ids.reasoning_end(trace.format) {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if std::mem::take(&mut self.wanted_end) {
            self.waits_left -= 1;
            out.event(
                "wait",
                Some(format!("at {} reasoning tokens", trace.reasoning_tokens)),
                None,
            );
            out.replace_token(self.wait.clone());
            return;
        }
        self.cap.on_token(trace, token, out);
    }
}
