//! `early-exit`: probe the answer while the model reasons, stop once it has settled
//! (Dynasor's Certaindex probes; ConCISE's early stopping).
//!
//! Every `every` reasoning tokens (or, with `trigger = "result"`, right after the
//! trace finishes an equation `… = 72`, at most once per `every` tokens) a probe forks
//! the sequence with the exit text (close the think section if there is one, then
//! `Final answer: \boxed{`) and decodes at most `probe_tokens` tokens greedily, until
//! the box closes. The sequence stops when the last `window` probe answers agree, none
//! of the probes hedged, and (if set) the last answer's mean token log-probability is
//! at least `min_logprob`; the agreed answer is then written in a box after the text.
//!
//! Better than Dynasor's recipe: answers are compared in a canonical form (`1,200` is
//! `1200`), an empty or unclosed box never counts as agreement, hedging is a whole-word
//! test (Dynasor's substring test lets "no" match "know"), agreement is checked on
//! every backend, and every probe token is counted in the completion's usage.
//!
//! `probe-trace` probes the same way and never stops: its events are the answer the
//! model would give at each point of its trace, the data to find the oracle bound and
//! to tune a stop rule offline.

use super::answer::{boxed_content, contains_word, just_computed, normalize, HEDGE_WORDS};
use super::{Controller, Decisions, Phase, TokenView, Trace};
use serde::{Deserialize, Serialize};
use terse_engine::{ProbeResult, SteeringReserve};

/// Where probes are forked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Every `every` reasoning tokens.
    Every,
    /// Right after an equation's result, at most once per `every` tokens.
    Result,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyExitOptions {
    /// Reasoning tokens between probes (the least, with `trigger = "result"`).
    pub every: usize,
    pub trigger: Trigger,
    /// Consecutive agreeing probe answers needed to stop.
    pub window: usize,
    /// Most tokens a probe decodes.
    pub probe_tokens: usize,
    /// No probe before this many reasoning tokens.
    pub min_tokens: usize,
    /// Stop only when the last probe's mean token log-probability is at least this.
    pub min_logprob: Option<f32>,
    /// Stop only on an answer the trace itself has written as an equation's result.
    pub require_computed: bool,
}

impl Default for EarlyExitOptions {
    /// Dynasor's defaults (a probe every 32 tokens, 2 agreeing answers), with a short
    /// probe: a GSM8K answer and its closing brace fit in 8 tokens.
    fn default() -> Self {
        EarlyExitOptions {
            every: 32,
            trigger: Trigger::Every,
            window: 2,
            probe_tokens: 8,
            min_tokens: 0,
            min_logprob: None,
            require_computed: false,
        }
    }
}

/// One probe's reading of the answer.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    answer: Option<String>,
    hedged: bool,
    mean_logprob: Option<f32>,
}

/// Probes on a schedule and reads the answers; shared by `early-exit` and `probe-trace`.
struct Prober {
    every: usize,
    trigger: Trigger,
    probe_tokens: usize,
    min_tokens: usize,
    last_probe_at: Option<usize>,
    next_tag: u64,
}

impl Prober {
    fn reserve(&self, probe_text_len: usize) -> SteeringReserve {
        super::probe_reserve(self.every, probe_text_len, self.probe_tokens)
    }

    /// Whether to probe after this token.
    fn due(&mut self, trace: &Trace, token: &TokenView<'_>) -> bool {
        if trace.phase != Phase::Reasoning
            || token.is_end_of_generation
            || trace.reasoning_tokens < self.min_tokens.max(1)
        {
            return false;
        }
        let since = self
            .last_probe_at
            .map_or(trace.reasoning_tokens, |at| trace.reasoning_tokens - at);
        let due = match self.trigger {
            Trigger::Every => since >= self.every,
            Trigger::Result => {
                let before = &trace.text[..trace.text.len() - token.piece.len()];
                since >= self.every && just_computed(before, token.piece).is_some()
            }
        };
        if due {
            self.last_probe_at = Some(trace.reasoning_tokens);
        }
        due
    }

    fn probe(&mut self, trace: &Trace, out: &mut Decisions) {
        self.next_tag += 1;
        out.probe(
            self.next_tag,
            trace.format.exit_text(),
            self.probe_tokens,
            &["}"],
        );
    }
}

fn read(probe: &ProbeResult) -> Reading {
    let answer = boxed_content(&probe.text)
        .map(normalize)
        .filter(|a| !a.is_empty());
    let hedged = contains_word(&probe.text, HEDGE_WORDS);
    // The answer's own tokens: everything but the closing brace.
    let n = probe
        .logprobs
        .len()
        .saturating_sub(1)
        .max(1)
        .min(probe.logprobs.len());
    let mean_logprob = (n > 0).then(|| probe.logprobs[..n].iter().sum::<f32>() / n as f32);
    Reading {
        answer,
        hedged,
        mean_logprob,
    }
}

pub struct EarlyExit {
    options: EarlyExitOptions,
    prober: Prober,
    readings: Vec<Reading>,
    done: bool,
}

impl EarlyExit {
    pub fn new(options: &EarlyExitOptions) -> Self {
        EarlyExit {
            prober: Prober {
                every: options.every,
                trigger: options.trigger,
                probe_tokens: options.probe_tokens,
                min_tokens: options.min_tokens,
                last_probe_at: None,
                next_tag: 0,
            },
            options: options.clone(),
            readings: Vec::new(),
            done: false,
        }
    }

    /// The answer to stop on, if the stop rule holds for the readings so far.
    fn settled(&self, trace: &Trace) -> Option<String> {
        let w = self.options.window.max(1);
        let last = self.readings.get(self.readings.len().checked_sub(w)?..)?;
        let answer = last.last()?.answer.clone()?;
        let agree = last
            .iter()
            .all(|r| !r.hedged && r.answer.as_deref() == Some(answer.as_str()));
        let confident = match self.options.min_logprob {
            Some(threshold) => last.last()?.mean_logprob.is_some_and(|l| l >= threshold),
            None => true,
        };
        let computed = !self.options.require_computed
            || computed_results(&trace.text).any(|r| normalize(r) == answer);
        (agree && confident && computed).then_some(answer)
    }
}

/// Every number the text writes as the result of an equation.
fn computed_results(text: &str) -> impl Iterator<Item = &str> {
    text.char_indices().filter_map(move |(i, c)| {
        if c.is_ascii_digit() {
            return None;
        }
        just_computed(&text[..i], &text[i..i + c.len_utf8()])
    })
}

impl Controller for EarlyExit {
    fn name(&self) -> &'static str {
        "early-exit"
    }

    fn reserve(&self) -> SteeringReserve {
        self.prober.reserve(super::Format::Think.exit_text().len())
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if !self.done && self.prober.due(trace, token) {
            self.prober.probe(trace, out);
        }
    }

    fn on_probe(&mut self, trace: &Trace, probe: &ProbeResult, out: &mut Decisions) {
        if self.done || trace.phase != Phase::Reasoning {
            return;
        }
        let reading = read(probe);
        out.event(
            "probe",
            Some(probe_detail(&reading, probe)),
            reading.mean_logprob,
        );
        self.readings.push(reading);
        if let Some(answer) = self.settled(trace) {
            self.done = true;
            out.event("exit", Some(answer.clone()), None);
            out.finish(
                format!("{}{answer}}}", trace.format.exit_text()),
                "early-exit",
            );
        }
    }
}

fn probe_detail(reading: &Reading, probe: &ProbeResult) -> String {
    let answer = reading.answer.as_deref().unwrap_or("");
    if reading.hedged {
        format!("{answer} (hedged: {:?})", probe.text)
    } else {
        answer.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeTraceOptions {
    /// Reasoning tokens between probes.
    pub every: usize,
    /// Most tokens a probe decodes.
    pub probe_tokens: usize,
}

impl Default for ProbeTraceOptions {
    fn default() -> Self {
        ProbeTraceOptions {
            every: 16,
            probe_tokens: 8,
        }
    }
}

pub struct ProbeTrace {
    prober: Prober,
}

impl ProbeTrace {
    pub fn new(options: &ProbeTraceOptions) -> Self {
        ProbeTrace {
            prober: Prober {
                every: options.every,
                trigger: Trigger::Every,
                probe_tokens: options.probe_tokens,
                min_tokens: 0,
                last_probe_at: None,
                next_tag: 0,
            },
        }
    }
}

impl Controller for ProbeTrace {
    fn name(&self) -> &'static str {
        "probe-trace"
    }

    fn reserve(&self) -> SteeringReserve {
        self.prober.reserve(super::Format::Think.exit_text().len())
    }

    fn on_token(&mut self, trace: &Trace, token: &TokenView<'_>, out: &mut Decisions) {
        if self.prober.due(trace, token) {
            self.prober.probe(trace, out);
        }
    }

    fn on_probe(&mut self, _trace: &Trace, probe: &ProbeResult, out: &mut Decisions) {
        let reading = read(probe);
        out.event(
            "probe",
            Some(probe_detail(&reading, probe)),
            reading.mean_logprob,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Format;
    use terse_engine::ProbeEnd;

    fn trace(text: &str) -> Trace {
        Trace {
            format: Format::Plain,
            phase: Phase::Reasoning,
            text: text.into(),
            sampled: 100,
            reasoning_tokens: 100,
            ids: None,
        }
    }

    fn probe(text: &str, logprobs: &[f32]) -> ProbeResult {
        ProbeResult {
            tag: 1,
            fork_position: 0,
            text: text.into(),
            tokens: vec![0; logprobs.len()],
            logprobs: logprobs.to_vec(),
            prefill_tokens: 7,
            end: ProbeEnd::StopString,
        }
    }

    fn feed(e: &mut EarlyExit, t: &Trace, text: &str) -> Vec<super::super::Decision> {
        let mut out = Decisions::default();
        e.on_probe(t, &probe(text, &[-0.1, -0.1]), &mut out);
        out.drain().collect()
    }

    fn finished(decisions: &[super::super::Decision]) -> Option<String> {
        decisions.iter().find_map(|d| match d {
            super::super::Decision::Finish { text, .. } => Some(text.clone()),
            _ => None,
        })
    }

    #[test]
    fn two_agreeing_probe_answers_stop_the_sequence_with_the_answer_boxed() {
        let t = trace("some reasoning");
        let mut e = EarlyExit::new(&EarlyExitOptions::default());
        assert_eq!(finished(&feed(&mut e, &t, "70}")), None);
        assert_eq!(
            finished(&feed(&mut e, &t, "72}")),
            None,
            "70 and 72 disagree"
        );
        let done = finished(&feed(&mut e, &t, "72 }")).expect("72 twice");
        assert!(done.ends_with("\\boxed{72}"), "{done}");
        assert!(done.starts_with("\n\nFinal answer"));
    }

    #[test]
    fn canonical_forms_agree_and_empty_or_unclosed_boxes_never_do() {
        let t = trace("x");
        let mut e = EarlyExit::new(&EarlyExitOptions::default());
        feed(&mut e, &t, "1,200}");
        assert!(finished(&feed(&mut e, &t, "$1200}")).is_some());
        let mut e = EarlyExit::new(&EarlyExitOptions::default());
        feed(&mut e, &t, "}");
        assert!(finished(&feed(&mut e, &t, "}")).is_none(), "empty boxes");
        let mut e = EarlyExit::new(&EarlyExitOptions::default());
        feed(&mut e, &t, "12 and");
        assert!(
            finished(&feed(&mut e, &t, "12 and")).is_none(),
            "never closed"
        );
    }

    #[test]
    fn a_hedged_probe_breaks_agreement_but_a_word_containing_no_does_not() {
        let t = trace("x");
        let mut e = EarlyExit::new(&EarlyExitOptions::default());
        feed(&mut e, &t, "72} wait");
        assert!(finished(&feed(&mut e, &t, "72}")).is_none());
        assert!(finished(&feed(&mut e, &t, "72} I know")).is_some());
    }

    #[test]
    fn the_confidence_rule_needs_a_likely_answer() {
        let t = trace("x");
        let options = EarlyExitOptions {
            min_logprob: Some(-0.5),
            ..EarlyExitOptions::default()
        };
        let mut e = EarlyExit::new(&options);
        let mut out = Decisions::default();
        e.on_probe(&t, &probe("72}", &[-2.0, -0.1]), &mut out);
        e.on_probe(&t, &probe("72}", &[-2.0, -0.1]), &mut out);
        assert!(
            finished(&out.drain().collect::<Vec<_>>()).is_none(),
            "mean log-prob -2"
        );
        e.on_probe(&t, &probe("72}", &[-0.2, -3.0]), &mut out);
        assert!(
            finished(&out.drain().collect::<Vec<_>>()).is_some(),
            "the brace's log-prob is not the answer's"
        );
    }

    #[test]
    fn require_computed_stops_only_on_a_result_the_trace_wrote() {
        let options = EarlyExitOptions {
            require_computed: true,
            ..EarlyExitOptions::default()
        };
        let mut e = EarlyExit::new(&options);
        let t = trace("She has 72 apples.");
        feed(&mut e, &t, "72}");
        assert!(
            finished(&feed(&mut e, &t, "72}")).is_none(),
            "72 is from the question"
        );
        let t = trace("48 + 24 = 72\nSo");
        assert!(finished(&feed(&mut e, &t, "72}")).is_some());
    }

    #[test]
    fn probes_are_due_every_k_reasoning_tokens_or_after_results() {
        let mut p = Prober {
            every: 4,
            trigger: Trigger::Every,
            probe_tokens: 8,
            min_tokens: 0,
            last_probe_at: None,
            next_tag: 0,
        };
        let token = TokenView {
            piece: "a",
            logprob: None,
            entropy: None,
            top_logprobs: &[],
            is_end_of_generation: false,
        };
        let due: Vec<usize> = (1..=12)
            .filter(|&n| {
                let mut t = trace("a");
                t.reasoning_tokens = n;
                p.due(&t, &token)
            })
            .collect();
        assert_eq!(due, vec![4, 8, 12]);

        p.trigger = Trigger::Result;
        p.last_probe_at = None;
        let newline = TokenView {
            piece: "\n",
            ..token
        };
        let mut t = trace("2 + 3 = 5\n");
        t.reasoning_tokens = 5;
        assert!(p.due(&t, &newline));
        t.reasoning_tokens = 7;
        assert!(!p.due(&t, &newline), "too soon after the last");
        let mut t = trace("there are 5\n");
        t.reasoning_tokens = 20;
        assert!(!p.due(&t, &newline), "not an equation");
    }
}
