//! `loop-guard`: detect a trace that repeats itself and cut it to the answer.
//!
//! Small models sometimes loop: they re-derive the same lines until the token cap.
//! Every token closes an n-gram of the last `ngram` token pieces; when each of the
//! last `min_repeat_tokens` tokens closed an n-gram seen earlier in the trace, the
//! text has been repeating itself verbatim for that long, which a sound derivation
//! does not do. The guard then writes the exit text (close the think section if
//! there is one, then `Final answer: \boxed{`) and lets the model answer within
//! `answer_tokens`. It needs only text, so it works on every backend.

use super::{forced_answer_reserve, Controller, Decisions, ForcedAnswer, TokenView, Trace};
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use terse_engine::SteeringReserve;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopGuardOptions {
    /// Tokens per n-gram.
    pub ngram: usize,
    /// Consecutive tokens closing an already seen n-gram that make a loop.
    pub min_repeat_tokens: usize,
    /// Most tokens of the forced answer.
    pub answer_tokens: usize,
}

impl Default for LoopGuardOptions {
    fn default() -> Self {
        LoopGuardOptions {
            ngram: 16,
            min_repeat_tokens: 32,
            answer_tokens: 16,
        }
    }
}

pub struct LoopGuard {
    options: LoopGuardOptions,
    window: VecDeque<u64>,
    seen: HashSet<u64>,
    repeated_run: usize,
    forced: Option<ForcedAnswer>,
}

impl LoopGuard {
    pub fn new(options: &LoopGuardOptions) -> Self {
        LoopGuard {
            options: options.clone(),
            window: VecDeque::new(),
            seen: HashSet::new(),
            repeated_run: 0,
            forced: None,
        }
    }

    /// Adds a token piece; true when the trace has looped.
    fn push(&mut self, piece: &str) -> bool {
        let mut h = DefaultHasher::new();
        piece.hash(&mut h);
        self.window.push_back(h.finish());
        if self.window.len() > self.options.ngram {
            self.window.pop_front();
        }
        if self.window.len() < self.options.ngram {
            return false;
        }
        let mut h = DefaultHasher::new();
        self.window.hash(&mut h);
        if self.seen.insert(h.finish()) {
            self.repeated_run = 0;
        } else {
            self.repeated_run += 1;
        }
        self.repeated_run >= self.options.min_repeat_tokens
    }
}

impl Controller for LoopGuard {
    fn name(&self) -> &'static str {
        "loop-guard"
    }

    fn reserve(&self) -> SteeringReserve {
        SteeringReserve {
            injected_tokens: forced_answer_reserve(0),
            ..SteeringReserve::default()
        }
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if let Some(forced) = &mut self.forced {
            if forced.on_token(token.piece) {
                out.stop("loop");
            }
            return;
        }
        if token.is_end_of_generation || !self.push(token.piece) {
            return;
        }
        out.event(
            "loop",
            Some(format!(
                "repeating for {} tokens",
                self.repeated_run + self.options.ngram
            )),
            None,
        );
        out.inject(trace.format.exit_text(), true);
        self.forced = Some(ForcedAnswer::new(self.options.answer_tokens));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn looped_at(guard: &mut LoopGuard, pieces: &[String]) -> Option<usize> {
        pieces.iter().position(|p| guard.push(p))
    }

    #[test]
    fn a_repeated_block_is_caught_once_it_has_repeated_long_enough() {
        let options = LoopGuardOptions {
            ngram: 4,
            min_repeat_tokens: 8,
            answer_tokens: 4,
        };
        let block: Vec<String> = (0..10).map(|i| format!(" w{i}")).collect();
        let mut pieces: Vec<String> = (0..20).map(|i| format!(" a{i}")).collect();
        for _ in 0..3 {
            pieces.extend(block.iter().cloned());
        }
        let at = looped_at(&mut LoopGuard::new(&options), &pieces).expect("loop found");
        // The second copy starts at 30; its 4th token closes the first repeated
        // 4-gram, and 8 repeats in a row later the loop is called.
        assert_eq!(at, 30 + 3 + 7);
    }

    #[test]
    fn a_trace_that_reuses_short_phrases_is_not_a_loop() {
        let mut pieces = Vec::new();
        for i in 0..40 {
            pieces.extend([" the", " number", " of", " clips"].map(String::from));
            pieces.push(format!(" {i}"));
        }
        assert_eq!(
            looped_at(&mut LoopGuard::new(&LoopGuardOptions::default()), &pieces),
            None
        );
    }
}
