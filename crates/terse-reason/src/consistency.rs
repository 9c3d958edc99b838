//! `consistency`: adaptive self-consistency. Draw sampled traces of one problem, vote
//! on their final answers, and stop drawing as soon as the vote is settled.
//!
//! Traces are drawn in rounds of siblings ([`Backend::complete_siblings`]): on the
//! local engine a round's traces fork the prompt's KV cache and decode in one batch.
//! After each round a stopping rule looks at the answer counts:
//!
//! - `beta` (Adaptive-Consistency, Aggarwal et al. 2023): with `a` votes for the
//!   leading answer and `b` for the runner-up, the leader's share among the two is
//!   Beta(a + 1, b + 1) under a uniform prior; stop when P(share > ½) ≥ `threshold`
//!   (0.95). Sampling one at a time this needs at least 4 agreeing traces.
//! - `window` (Early-Stopping Self-Consistency, Li et al. 2024): stop when the last
//!   `window` traces all give the same answer.
//! - `fixed`: draw all `max_samples` (plain self-consistency, the baseline).
//!
//! The answer is the majority (ties go to the answer reached first); the completion
//! returned is the first trace that gave it, and its usage is the sum over every
//! trace drawn, so savings are stated on everything computed. Each trace's answer,
//! its mean token log-probability (its confidence) and whether it voted with the
//! winner are kept as events. Any other stages of the chain steer every trace.
//!
//! Trace `j` samples with seed `seed + j` at the configured `temperature`, so a run
//! that stops after m traces drew exactly the first m traces of a `fixed` run. With
//! `first_greedy` the first trace is the greedy one (plain chain of thought) and the
//! sampled ones only check it: with `rule = "window"`, `window = 2`, the vote ends
//! after two traces when the first sample agrees with the greedy answer.

use crate::strategy::answer::{last_boxed, normalize};
use crate::{Backend, BackendError, Completion, CompletionRequest, StrategyEvent, Usage};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// When to stop drawing traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StopRule {
    #[default]
    Beta,
    Window,
    Fixed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencyOptions {
    /// Most traces drawn.
    pub max_samples: usize,
    pub rule: StopRule,
    /// `beta`: the probability that the leading answer is the majority.
    pub threshold: f64,
    /// `window`: consecutive agreeing traces that settle the vote.
    pub window: usize,
    /// Traces drawn together per round; by default 1 for `beta`, `window` for
    /// `window`, `max_samples` for `fixed`.
    pub round: Option<usize>,
    /// Sampling temperature of the traces (the request's other sampling settings
    /// are kept).
    pub temperature: f32,
    /// Decode the first trace greedily (temperature 0) and sample the rest.
    pub first_greedy: bool,
}

impl Default for ConsistencyOptions {
    fn default() -> Self {
        ConsistencyOptions {
            max_samples: 5,
            rule: StopRule::Beta,
            threshold: 0.95,
            window: 5,
            round: None,
            temperature: 0.7,
            first_greedy: false,
        }
    }
}

impl ConsistencyOptions {
    /// Traces per round.
    pub fn round_size(&self) -> usize {
        self.round
            .unwrap_or(match self.rule {
                StopRule::Beta => 1,
                StopRule::Window => self.window,
                StopRule::Fixed => self.max_samples,
            })
            .clamp(1, self.max_samples.max(1))
    }
}

/// P(p > ½) for p ~ Beta(a + 1, b + 1): the probability, under a uniform prior, that
/// an answer with `a` votes beats one with `b`. For integer parameters this is the
/// binomial sum P(X ≤ a) with X ~ Binomial(a + b + 1, ½).
pub fn beta_majority_probability(a: usize, b: usize) -> f64 {
    let n = a + b + 1;
    // Sum C(n, k) / 2^n for k = 0..=a in logs, so large counts do not overflow.
    let ln_choose = |n: usize, k: usize| -> f64 {
        (1..=k)
            .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
            .sum()
    };
    let ln_half_n = n as f64 * 0.5f64.ln();
    (0..=a)
        .map(|k| (ln_choose(n, k) + ln_half_n).exp())
        .sum::<f64>()
        .min(1.0)
}

/// The answer a trace gives, in canonical form: its last `\boxed{…}`, else the last
/// number it writes. `None` when it gives neither.
pub fn trace_answer(text: &str) -> Option<String> {
    if let Some(boxed) = last_boxed(text) {
        let answer = normalize(boxed);
        if !answer.is_empty() {
            return Some(answer);
        }
    }
    last_number(text).map(normalize)
}

fn last_number(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while end > 0 {
        if bytes[end - 1].is_ascii_digit() {
            let mut start = end;
            while start > 0
                && (bytes[start - 1].is_ascii_digit()
                    || (matches!(bytes[start - 1], b'.' | b',')
                        && start >= 2
                        && bytes[start - 2].is_ascii_digit()))
            {
                start -= 1;
            }
            if start > 0 && bytes[start - 1] == b'-' {
                start -= 1;
            }
            return Some(&text[start..end]);
        }
        end -= 1;
    }
    None
}

/// The vote so far: answers with their counts, in the order first reached.
#[derive(Debug, Default)]
struct Tally {
    counts: Vec<(String, usize)>,
    /// Answers in draw order (`None`: the trace gave none, and does not vote).
    answers: Vec<Option<String>>,
}

impl Tally {
    fn add(&mut self, answer: Option<String>) {
        if let Some(a) = &answer {
            match self.counts.iter_mut().find(|(x, _)| x == a) {
                Some((_, n)) => *n += 1,
                None => self.counts.push((a.clone(), 1)),
            }
        }
        self.answers.push(answer);
    }

    /// The leading answer (ties: the one reached first) and the top two counts.
    fn leader(&self) -> Option<(&str, usize, usize)> {
        let mut best: Option<(&str, usize)> = None;
        for (a, n) in &self.counts {
            if best.is_none_or(|(_, m)| *n > m) {
                best = Some((a, *n));
            }
        }
        let (answer, top) = best?;
        let second = self
            .counts
            .iter()
            .filter(|(a, _)| a != answer)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        Some((answer, top, second))
    }

    fn settled(&self, options: &ConsistencyOptions) -> bool {
        match options.rule {
            StopRule::Fixed => false,
            StopRule::Beta => self
                .leader()
                .is_some_and(|(_, a, b)| beta_majority_probability(a, b) >= options.threshold),
            StopRule::Window => {
                let w = options.window;
                self.answers.len() >= w && {
                    let last = &self.answers[self.answers.len() - w..];
                    last[0].is_some() && last.iter().all(|a| a == &last[0])
                }
            }
        }
    }
}

/// Runs `request` as adaptive self-consistency; see the module documentation.
pub fn complete<B: Backend + ?Sized>(
    backend: &B,
    request: &CompletionRequest,
    options: &ConsistencyOptions,
) -> Result<Completion, BackendError> {
    let start = Instant::now();
    let trace_request = |j: usize| CompletionRequest {
        strategy: request.strategy.without_consistency(),
        // The confidence of each trace is its mean token log-probability.
        logprobs: true,
        sampling: trace_sampling(options, &request.sampling, j),
        ..request.clone()
    };
    let mut traces: Vec<Completion> = Vec::new();
    let (tally, settled) = draw_rounds::<BackendError>(options, |range| {
        let requests: Vec<CompletionRequest> = range.map(trace_request).collect();
        let drawn = backend.complete_siblings(&requests)?;
        let answers = drawn
            .iter()
            .map(|t| trace_answer(&graded_text(t)))
            .collect();
        traces.extend(drawn);
        Ok(answers)
    })?;
    Ok(merge(
        traces,
        &tally,
        settled,
        request.logprobs,
        start.elapsed().as_secs_f64(),
    ))
}

/// How trace `j` samples: `base` at the traces' temperature (greedy for the first
/// with `first_greedy`), seeded `seed + j`.
pub fn trace_sampling(
    options: &ConsistencyOptions,
    base: &crate::SamplerConfig,
    j: usize,
) -> crate::SamplerConfig {
    crate::SamplerConfig {
        temperature: if options.first_greedy && j == 0 {
            0.0
        } else {
            options.temperature
        },
        seed: base.seed.wrapping_add(j as u64),
        ..base.clone()
    }
}

/// Draws rounds of traces until the vote is settled or `max_samples` are drawn.
/// `draw(j..k)` draws traces `j..k` and returns their answers; the tally and whether
/// the vote settled come back.
fn draw_rounds<E>(
    options: &ConsistencyOptions,
    mut draw: impl FnMut(std::ops::Range<usize>) -> Result<Vec<Option<String>>, E>,
) -> Result<(Tally, bool), E> {
    let mut tally = Tally::default();
    let round = options.round_size();
    let mut settled = false;
    while tally.answers.len() < options.max_samples && !settled {
        let drawn = tally.answers.len();
        let n = round.min(options.max_samples - drawn);
        for answer in draw(drawn..drawn + n)? {
            tally.add(answer);
        }
        settled = tally.settled(options);
    }
    Ok((tally, settled))
}

/// How a stopping rule would have ended on traces already drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Traces the rule draws (the first `drawn` of those given).
    pub drawn: usize,
    /// The majority answer of those traces.
    pub answer: Option<String>,
    /// Whether the rule settled before `max_samples`.
    pub settled: bool,
}

/// Replays `options`' stopping rule on the answers of traces drawn with the same
/// seeds, in draw order (a `fixed` run's traces: trace `j` is the same whatever the
/// rule). `None` when the rule would need more traces than `answers` holds.
pub fn replay(answers: &[Option<String>], options: &ConsistencyOptions) -> Option<Replayed> {
    let (tally, settled) = draw_rounds(options, |range| {
        answers.get(range).map(<[_]>::to_vec).ok_or(())
    })
    .ok()?;
    Some(Replayed {
        drawn: tally.answers.len(),
        answer: tally.leader().map(|(a, _, _)| a.to_string()),
        settled,
    })
}

/// The text a trace's answer is read from: the answer, or its reasoning when the
/// answer is empty (cut off inside the think section).
fn graded_text(trace: &Completion) -> String {
    match (&trace.reasoning, trace.text.trim().is_empty()) {
        (Some(reasoning), true) => reasoning.clone(),
        _ => trace.text.clone(),
    }
}

/// One completion from the traces: the first trace with the winning answer, the
/// usage of all of them, and an event per trace.
fn merge(
    traces: Vec<Completion>,
    tally: &Tally,
    settled: bool,
    keep_logprobs: bool,
    latency_s: f64,
) -> Completion {
    let winner = tally.leader().map(|(a, _, _)| a.to_string());
    let chosen = traces
        .iter()
        .position(|t| trace_answer(&graded_text(t)) == winner)
        .unwrap_or(0);
    let mut usage = Usage::default();
    let mut engine_time: Option<crate::EngineTime> = None;
    let mut events = Vec::with_capacity(traces.len() + 1);
    for (j, trace) in traces.iter().enumerate() {
        let u = &trace.usage;
        usage.add_work(u);
        usage.prompt_cached_tokens += u.prompt_cached_tokens;
        engine_time = crate::EngineTime::sum(engine_time, trace.engine_time);
        let confidence = (!trace.logprobs.is_empty()).then(|| {
            trace.logprobs.iter().map(|l| l.logprob).sum::<f32>() / trace.logprobs.len() as f32
        });
        let answer = tally.answers.get(j).cloned().flatten();
        let voted_with_winner = answer.is_some() && answer == winner;
        events.push(StrategyEvent {
            strategy: "consistency".into(),
            kind: if voted_with_winner {
                "trace".into()
            } else {
                "trace-outvoted".into()
            },
            at_token: u.output_tokens,
            detail: Some(answer.unwrap_or_else(|| "(no answer)".into())),
            logprob: confidence,
            probe_tokens: None,
        });
        events.extend(trace.events.iter().cloned());
    }
    // Traces of one prompt: the prompt counts once; the cached part is what the
    // siblings did not recompute, counted per trace.
    usage.prompt_tokens = traces.first().map_or(0, |t| t.usage.prompt_tokens);
    let counts: Vec<String> = tally
        .counts
        .iter()
        .map(|(a, n)| format!("{a}×{n}"))
        .collect();
    events.push(StrategyEvent {
        strategy: "consistency".into(),
        kind: if settled { "settled" } else { "max-samples" }.into(),
        at_token: usage.output_tokens,
        detail: Some(counts.join(" ")),
        logprob: None,
        probe_tokens: None,
    });
    let mut traces = traces;
    let mut completion = if traces.is_empty() {
        // max_samples ≥ 1 is validated; nothing was drawn only if it was 0.
        Completion {
            text: String::new(),
            reasoning: None,
            usage: Usage::default(),
            finish: crate::Finish::Length,
            stop_reason: "length".into(),
            events: Vec::new(),
            latency_s: 0.0,
            engine_time: None,
            logprobs: Vec::new(),
        }
    } else {
        traces.swap_remove(chosen)
    };
    if !keep_logprobs {
        completion.logprobs.clear();
    }
    completion.usage = usage;
    completion.events = events;
    completion.engine_time = engine_time;
    completion.latency_s = latency_s;
    completion.stop_reason = if settled {
        "consistency".into()
    } else {
        "max-samples".into()
    };
    completion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_trace_is_greedy_only_when_asked_and_every_trace_has_its_seed() {
        let base = crate::SamplerConfig {
            seed: 40,
            top_k: 20,
            ..crate::SamplerConfig::default()
        };
        let plain = ConsistencyOptions::default();
        let greedy_first = ConsistencyOptions {
            first_greedy: true,
            ..ConsistencyOptions::default()
        };
        for j in 0..3 {
            let s = trace_sampling(&plain, &base, j);
            assert_eq!((s.temperature, s.seed, s.top_k), (0.7, 40 + j as u64, 20));
            let g = trace_sampling(&greedy_first, &base, j);
            assert_eq!(g.seed, 40 + j as u64);
            assert_eq!(g.temperature, if j == 0 { 0.0 } else { 0.7 });
        }
    }

    #[test]
    fn the_beta_rule_matches_the_closed_form() {
        // P(p > ½) for p ~ Beta(a+1, b+1): 1 - ½^(a+1) when b = 0.
        for a in 0..8 {
            let expected = 1.0 - 0.5f64.powi(a as i32 + 1);
            assert!((beta_majority_probability(a, 0) - expected).abs() < 1e-12);
        }
        // Beta(4, 2): I_½(2, 4) complement = 1 - 6/32 = 26/32.
        assert!((beta_majority_probability(3, 1) - 26.0 / 32.0).abs() < 1e-12);
        // A tie is a coin flip.
        assert!((beta_majority_probability(2, 2) - 0.5).abs() < 1e-12);
        // Large counts neither overflow nor exceed 1.
        let p = beta_majority_probability(400, 10);
        assert!(p > 0.999_999 && p <= 1.0);
    }

    #[test]
    fn beta_stops_after_four_agreeing_traces_at_095() {
        let options = ConsistencyOptions::default();
        let mut tally = Tally::default();
        for n in 1..=4 {
            tally.add(Some("18".into()));
            assert_eq!(tally.settled(&options), n == 4, "after {n}");
        }
    }

    #[test]
    fn a_replay_draws_in_rounds_and_stops_where_the_rule_settles() {
        let a = |xs: &[&str]| -> Vec<Option<String>> {
            xs.iter()
                .map(|x| (!x.is_empty()).then(|| x.to_string()))
                .collect()
        };
        let traces = a(&["7", "", "7", "7", "7"]);
        // Beta one at a time: the fourth "7" arrives with the fifth trace.
        let beta = replay(&traces, &ConsistencyOptions::default()).unwrap();
        assert_eq!((beta.drawn, beta.settled), (5, true));
        assert_eq!(beta.answer.as_deref(), Some("7"));
        // A window of 2 settles on traces 3 and 4; in rounds of 2 it is checked
        // only after traces 2 and 4.
        let window = |round| ConsistencyOptions {
            rule: StopRule::Window,
            window: 2,
            round: Some(round),
            ..Default::default()
        };
        assert_eq!(replay(&traces, &window(1)).unwrap().drawn, 4);
        assert_eq!(replay(&traces, &window(2)).unwrap().drawn, 4);
        let fixed = ConsistencyOptions {
            rule: StopRule::Fixed,
            ..Default::default()
        };
        let all = replay(&traces, &fixed).unwrap();
        assert_eq!((all.drawn, all.settled), (5, false));
        // A rule that needs more traces than were recorded cannot be replayed.
        assert_eq!(replay(&traces[..3], &fixed), None);
    }

    #[test]
    fn the_window_rule_needs_the_last_traces_to_agree() {
        let options = ConsistencyOptions {
            rule: StopRule::Window,
            window: 2,
            ..ConsistencyOptions::default()
        };
        let mut tally = Tally::default();
        tally.add(Some("3".into()));
        tally.add(Some("4".into()));
        assert!(!tally.settled(&options));
        tally.add(Some("4".into()));
        assert!(tally.settled(&options));
        let mut none = Tally::default();
        none.add(None);
        none.add(None);
        assert!(
            !none.settled(&options),
            "traces without answers settle nothing"
        );
    }

    #[test]
    fn ties_go_to_the_answer_reached_first() {
        let mut tally = Tally::default();
        for a in ["7", "9", "9", "7", "1"] {
            tally.add(Some(a.into()));
        }
        assert_eq!(tally.leader(), Some(("7", 2, 2)));
    }

    #[test]
    fn a_trace_answer_is_its_box_or_its_last_number() {
        assert_eq!(trace_answer("so \\boxed{1,200}."), Some("1200".into()));
        assert_eq!(trace_answer("She pays $18.50 in all."), Some("18.5".into()));
        assert_eq!(trace_answer("a loss of -4"), Some("-4".into()));
        assert_eq!(trace_answer("no idea"), None);
    }
}
