//! `verify`: stop reasoning once the model itself confirms an answer it has reached
//! (Solve-Detect-Verify; FlexiVe's yes/no verification).
//!
//! Detect: right after the trace finishes an equation (`… = 72`), at most once per
//! `every` reasoning tokens, the result is a candidate answer. Verify: a probe forks
//! the sequence with the exit text, the candidate boxed, and a yes/no question, and
//! decodes `probe_tokens` tokens greedily. When the model's first word is "yes" (or
//! "correct", "right"; the default question ends "The answer is") and the reply's
//! probability (a lower bound on p("yes")) is at least `min_yes_prob`, the sequence
//! stops with the candidate boxed (stop reason `verified`); otherwise it reasons on
//! untouched, since a probe never changes its parent. Every verification probe's
//! tokens are counted.
//!
//! Unlike early exit, no agreement between probes is needed: one confident "yes"
//! ends the trace, and one probe per candidate is paid.

use super::answer::{just_computed, normalize};
use super::{Controller, Decisions, Phase, TokenView, Trace};
use serde::{Deserialize, Serialize};
use terse_engine::{ProbeResult, SteeringReserve};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyOptions {
    /// Least reasoning tokens between two verifications.
    pub every: usize,
    /// No verification before this many reasoning tokens.
    pub min_tokens: usize,
    /// The question asked after the boxed candidate.
    pub question: String,
    /// Tokens the verification probe decodes (its first word is read; the reply's
    /// probability, all of these tokens, is the confidence).
    pub probe_tokens: usize,
    /// Least probability of the "yes" that stops the trace.
    pub min_yes_prob: f32,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            every: 32,
            min_tokens: 0,
            // A question the model answers in its own turn: asked plainly ("Answer yes
            // or no:") the instruct models end their message instead.
            question: "\n\nIs this answer correct (yes/no)? The answer is".into(),
            probe_tokens: 2,
            min_yes_prob: 0.9,
        }
    }
}

/// What a verification probe said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    Unclear,
}

/// log p of the whole reply: the word may follow a newline or a space token, and the
/// tokens after it only make this a lower bound on p("yes").
fn reply_logprob(probe: &ProbeResult) -> Option<f32> {
    (!probe.logprobs.is_empty()).then(|| probe.logprobs.iter().sum())
}

fn verdict(probe: &ProbeResult) -> Verdict {
    let first_word: String = probe
        .text
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphabetic())
        .collect::<String>()
        .to_lowercase();
    match first_word.as_str() {
        "yes" | "correct" | "right" => Verdict::Yes,
        "no" | "incorrect" | "wrong" | "not" => Verdict::No,
        _ => Verdict::Unclear,
    }
}

pub struct Verify {
    options: VerifyOptions,
    last_check_at: Option<usize>,
    /// Candidates being verified, by probe tag.
    pending: Vec<(u64, String)>,
    next_tag: u64,
    done: bool,
}

impl Verify {
    pub fn new(options: &VerifyOptions) -> Self {
        Verify {
            options: options.clone(),
            last_check_at: None,
            pending: Vec::new(),
            next_tag: 0,
            done: false,
        }
    }

    /// The candidate to verify after this token, if it completes a result and a
    /// check is due.
    fn candidate(&mut self, trace: &Trace, token: &TokenView<'_>) -> Option<String> {
        if self.done
            || trace.phase != Phase::Reasoning
            || token.is_end_of_generation
            || trace.reasoning_tokens < self.options.min_tokens.max(1)
        {
            return None;
        }
        let since = self
            .last_check_at
            .map_or(usize::MAX, |at| trace.reasoning_tokens - at);
        if since < self.options.every {
            return None;
        }
        let before = &trace.text[..trace.text.len() - token.piece.len()];
        let result = normalize(just_computed(before, token.piece)?);
        self.last_check_at = Some(trace.reasoning_tokens);
        Some(result)
    }
}

impl Controller for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }

    fn reserve(&self) -> SteeringReserve {
        // The exit text, the candidate (an equation's result: a number well under 32
        // bytes), its closing brace and the question.
        let text = super::Format::Think.exit_text().len() + 32 + self.options.question.len();
        super::probe_reserve(self.options.every, text, self.options.probe_tokens)
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        let Some(candidate) = self.candidate(trace, token) else {
            return;
        };
        self.next_tag += 1;
        let text = format!(
            "{}{candidate}}}{}",
            trace.format.exit_text(),
            self.options.question
        );
        out.probe(self.next_tag, text, self.options.probe_tokens, &[]);
        self.pending.push((self.next_tag, candidate));
    }

    fn on_probe(&mut self, trace: &Trace, probe: &ProbeResult, out: &mut Decisions) {
        let Some(i) = self.pending.iter().position(|(tag, _)| *tag == probe.tag) else {
            return;
        };
        let (_, candidate) = self.pending.swap_remove(i);
        if self.done || trace.phase != Phase::Reasoning {
            return;
        }
        let v = verdict(probe);
        let word = match v {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Unclear => "unclear",
        };
        let logprob = reply_logprob(probe);
        let detail = match v {
            Verdict::Unclear => format!("{candidate}: {word} ({:?})", probe.text),
            _ => format!("{candidate}: {word}"),
        };
        out.event("verify", Some(detail), logprob);
        // Without a log-probability (a text backend that gives none) nothing is
        // confident enough to stop on.
        let confident = logprob.is_some_and(|l| l.exp() >= self.options.min_yes_prob);
        if v == Verdict::Yes && confident {
            self.done = true;
            out.finish(
                format!("{}{candidate}}}", trace.format.exit_text()),
                "verified",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Decision, Format};
    use terse_engine::ProbeEnd;

    fn trace(text: &str, reasoning_tokens: usize) -> Trace {
        Trace {
            format: Format::Plain,
            phase: Phase::Reasoning,
            text: text.into(),
            sampled: reasoning_tokens,
            reasoning_tokens,
            ids: None,
        }
    }

    fn token(piece: &str) -> TokenView<'_> {
        TokenView {
            piece,
            logprob: None,
            entropy: None,
            top_logprobs: &[],
            is_end_of_generation: false,
        }
    }

    fn answer(tag: u64, text: &str, logprob: f32) -> ProbeResult {
        ProbeResult {
            tag,
            fork_position: 0,
            text: text.into(),
            tokens: vec![0, 0],
            logprobs: vec![logprob, 0.0],
            prefill_tokens: 30,
            end: ProbeEnd::MaxTokens,
        }
    }

    fn probes(out: &mut Decisions) -> Vec<String> {
        out.drain()
            .filter_map(|d| match d {
                Decision::Probe { text, .. } => Some(text),
                _ => None,
            })
            .collect()
    }

    fn finished(out: &mut Decisions) -> Option<String> {
        out.drain().find_map(|d| match d {
            Decision::Finish { text, reason } => {
                assert_eq!(reason, "verified");
                Some(text)
            }
            _ => None,
        })
    }

    #[test]
    fn a_result_is_verified_with_the_candidate_boxed_in_the_probe() {
        let mut v = Verify::new(&VerifyOptions::default());
        let mut out = Decisions::default();
        v.on_token(&trace("48 + 24 = 72\n", 40), &token("\n"), &mut out);
        let asked = probes(&mut out);
        assert_eq!(asked.len(), 1);
        assert!(
            asked[0].starts_with("\n\nFinal answer: \\boxed{72}\n\nIs this answer correct"),
            "{asked:?}"
        );
        // Not again within `every` tokens, nor without an equation.
        v.on_token(&trace("48 + 24 = 72\n3 = 3\n", 50), &token("\n"), &mut out);
        v.on_token(&trace("there are 72\n", 90), &token("\n"), &mut out);
        assert!(probes(&mut out).is_empty());
    }

    #[test]
    fn only_a_confident_yes_stops_and_a_no_lets_the_trace_go_on() {
        let t = trace("48 + 24 = 72\n", 40);
        let mut v = Verify::new(&VerifyOptions::default());
        let mut out = Decisions::default();
        v.on_token(&t, &token("\n"), &mut out);
        out.drain().for_each(drop);
        v.on_probe(&t, &answer(1, " No", -0.01), &mut out);
        assert_eq!(finished(&mut out), None);

        let t = trace("48 + 24 = 72\n18 * 2 = 36\n", 80);
        v.on_token(&t, &token("\n"), &mut out);
        out.drain().for_each(drop);
        v.on_probe(&t, &answer(2, " Yes", 0.7f32.ln()), &mut out);
        assert_eq!(finished(&mut out), None, "p(yes) 0.7 < 0.9");

        let t = trace("48 + 24 = 72\n18 * 2 = 36\n36 + 1 = 37\n", 120);
        v.on_token(&t, &token("\n"), &mut out);
        out.drain().for_each(drop);
        v.on_probe(&t, &answer(3, " yes.", 0.95f32.ln()), &mut out);
        assert_eq!(
            finished(&mut out).as_deref(),
            Some("\n\nFinal answer: \\boxed{37}")
        );
    }

    #[test]
    fn yes_is_a_whole_word() {
        assert_eq!(verdict(&answer(1, " Yesterday", -0.01)), Verdict::Unclear);
        assert_eq!(verdict(&answer(1, "no,", -0.01)), Verdict::No);
        assert_eq!(verdict(&answer(1, "YES", -0.01)), Verdict::Yes);
        assert_eq!(verdict(&answer(1, " correct.", -0.01)), Verdict::Yes);
        assert_eq!(verdict(&answer(1, " incorrect.", -0.01)), Verdict::No);
        assert_eq!(verdict(&answer(1, " 72.", -0.01)), Verdict::Unclear);
    }
}
