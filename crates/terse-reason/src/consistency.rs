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
//! DeepConf's offline filter (Fu et al. 2025) decides the answer among the traces
//! drawn: `keep` < 1 lets only the most confident `⌈keep · n⌉` of the n traces with an
//! answer vote (DeepConf-low keeps 10%, -high 90%), and `vote = "confidence"` weighs
//! each vote by the trace's confidence, exp(mean token log-probability), the
//! geometric-mean probability of its tokens. (DeepConf's own confidence is a
//! sliding-window mean of the top-k log-probabilities; the trace mean of the sampled
//! tokens is what every backend that returns log-probabilities gives.) The stopping
//! rules count plain votes either way, so a filtered run draws the same traces as
//! an unfiltered one and only its answer can differ.
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

/// How the drawn traces' answers are combined (after the `keep` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Vote {
    /// One trace, one vote.
    #[default]
    Majority,
    /// Each vote weighs exp(the trace's mean token log-probability).
    Confidence,
}

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
    /// How the answers are combined.
    pub vote: Vote,
    /// The fraction of the traces with an answer, the most confident first, that
    /// vote (1: all of them).
    pub keep: f64,
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
            vote: Vote::Majority,
            keep: 1.0,
        }
    }
}

impl ConsistencyOptions {
    /// Whether the answer depends on the traces' confidences.
    pub fn needs_confidence(&self) -> bool {
        self.vote == Vote::Confidence || self.keep < 1.0
    }

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

/// One drawn trace as the vote sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceVote {
    /// `None`: the trace gave no answer, and does not vote.
    pub answer: Option<String>,
    /// Mean token log-probability; `None` when the backend gave none.
    pub confidence: Option<f32>,
}

/// The vote so far: answers with their counts, in the order first reached.
#[derive(Debug, Default)]
struct Tally {
    counts: Vec<(String, usize)>,
    /// The traces in draw order.
    traces: Vec<TraceVote>,
}

impl Tally {
    fn add(&mut self, trace: TraceVote) {
        if let Some(a) = &trace.answer {
            match self.counts.iter_mut().find(|(x, _)| x == a) {
                Some((_, n)) => *n += 1,
                None => self.counts.push((a.clone(), 1)),
            }
        }
        self.traces.push(trace);
    }

    /// Which traces vote: those with an answer, and of them only the most confident
    /// `⌈keep · n⌉` (at least one) when `keep` < 1. In draw order.
    fn voters(&self, options: &ConsistencyOptions) -> Vec<usize> {
        let mut voters: Vec<usize> = (0..self.traces.len())
            .filter(|&j| self.traces[j].answer.is_some())
            .collect();
        if options.keep < 1.0 && !voters.is_empty() {
            let n = ((options.keep * voters.len() as f64).ceil() as usize).clamp(1, voters.len());
            let confidence = |j: usize| self.traces[j].confidence.unwrap_or(f32::NEG_INFINITY);
            // Stable: equally confident traces keep their draw order.
            let mut by_confidence = voters.clone();
            by_confidence.sort_by(|&a, &b| confidence(b).total_cmp(&confidence(a)));
            by_confidence.truncate(n);
            voters.retain(|j| by_confidence.contains(j));
        }
        voters
    }

    /// The answer of the vote among [`Tally::voters`], weighted as `options.vote`
    /// says; ties go to the answer reached first.
    fn winner(&self, options: &ConsistencyOptions) -> Option<String> {
        let mut weights: Vec<(&str, f64)> = Vec::new();
        for j in self.voters(options) {
            let trace = &self.traces[j];
            let Some(answer) = trace.answer.as_deref() else {
                continue;
            };
            let weight = match options.vote {
                Vote::Majority => 1.0,
                Vote::Confidence => trace.confidence.map_or(0.0, |c| f64::from(c).exp()),
            };
            match weights.iter_mut().find(|(a, _)| *a == answer) {
                Some((_, w)) => *w += weight,
                None => weights.push((answer, weight)),
            }
        }
        let mut best: Option<(&str, f64)> = None;
        for (a, w) in weights {
            if best.is_none_or(|(_, m)| w > m) {
                best = Some((a, w));
            }
        }
        best.map(|(a, _)| a.to_string())
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
                self.traces.len() >= w && {
                    let last = &self.traces[self.traces.len() - w..];
                    last[0].answer.is_some() && last.iter().all(|t| t.answer == last[0].answer)
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
    let no_logprobs = || {
        BackendError::from(crate::StrategyError::Unsupported {
            strategy: "consistency".into(),
            what: "token log-probabilities (for vote = \"confidence\" or keep < 1)",
            backend: backend.fingerprint(),
        })
    };
    if options.needs_confidence() && !backend.capabilities().logprobs {
        return Err(no_logprobs());
    }
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
        let votes: Vec<TraceVote> = drawn
            .iter()
            .map(|t| TraceVote {
                answer: trace_answer(&graded_text(t)),
                confidence: confidence(t),
            })
            .collect();
        if options.needs_confidence() && votes.iter().any(|v| v.confidence.is_none()) {
            return Err(no_logprobs());
        }
        traces.extend(drawn);
        Ok(votes)
    })?;
    Ok(merge(
        traces,
        &tally,
        settled,
        options,
        request.logprobs,
        start.elapsed().as_secs_f64(),
    ))
}

/// A trace's confidence: its mean token log-probability.
fn confidence(trace: &Completion) -> Option<f32> {
    (!trace.logprobs.is_empty()).then(|| {
        trace.logprobs.iter().map(|l| l.logprob).sum::<f32>() / trace.logprobs.len() as f32
    })
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
/// `draw(j..k)` draws traces `j..k` and returns their votes; the tally and whether
/// the vote settled come back.
fn draw_rounds<E>(
    options: &ConsistencyOptions,
    mut draw: impl FnMut(std::ops::Range<usize>) -> Result<Vec<TraceVote>, E>,
) -> Result<(Tally, bool), E> {
    let mut tally = Tally::default();
    let round = options.round_size();
    let mut settled = false;
    while tally.traces.len() < options.max_samples && !settled {
        let drawn = tally.traces.len();
        let n = round.min(options.max_samples - drawn);
        for trace in draw(drawn..drawn + n)? {
            tally.add(trace);
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
    /// The answer of those traces' vote.
    pub answer: Option<String>,
    /// Whether the rule settled before `max_samples`.
    pub settled: bool,
}

/// Replays `options`' stopping rule and vote on traces drawn with the same seeds, in
/// draw order (a `fixed` run's traces: trace `j` is the same whatever the rule).
/// `None` when the rule would need more traces than `traces` holds.
pub fn replay(traces: &[TraceVote], options: &ConsistencyOptions) -> Option<Replayed> {
    let (tally, settled) = draw_rounds(options, |range| {
        traces.get(range).map(<[_]>::to_vec).ok_or(())
    })
    .ok()?;
    Some(Replayed {
        drawn: tally.traces.len(),
        answer: tally.winner(options),
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
    options: &ConsistencyOptions,
    keep_logprobs: bool,
    latency_s: f64,
) -> Completion {
    let winner = tally.winner(options);
    let voters = tally.voters(options);
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
        let vote = tally.traces.get(j).cloned().unwrap_or_default();
        let kind = if vote.answer.is_some() && !voters.contains(&j) {
            "trace-dropped"
        } else if vote.answer.is_some() && vote.answer == winner {
            "trace"
        } else {
            "trace-outvoted"
        };
        events.push(StrategyEvent {
            strategy: "consistency".into(),
            kind: kind.into(),
            at_token: u.output_tokens,
            detail: Some(vote.answer.unwrap_or_else(|| "(no answer)".into())),
            logprob: vote.confidence,
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
    use crate::scripted::{completion, ScriptedBackend};

    /// A trace that answers `answer` ("" for none) at `confidence`.
    fn vote(answer: &str, confidence: f32) -> TraceVote {
        TraceVote {
            answer: (!answer.is_empty()).then(|| answer.to_string()),
            confidence: Some(confidence),
        }
    }

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
            tally.add(vote("18", -0.1));
            assert_eq!(tally.settled(&options), n == 4, "after {n}");
        }
    }

    #[test]
    fn a_replay_draws_in_rounds_and_stops_where_the_rule_settles() {
        let a = |xs: &[&str]| -> Vec<TraceVote> { xs.iter().map(|x| vote(x, -0.1)).collect() };
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
        tally.add(vote("3", -0.1));
        tally.add(vote("4", -0.1));
        assert!(!tally.settled(&options));
        tally.add(vote("4", -0.1));
        assert!(tally.settled(&options));
        let mut none = Tally::default();
        none.add(vote("", -0.1));
        none.add(vote("", -0.1));
        assert!(
            !none.settled(&options),
            "traces without answers settle nothing"
        );
    }

    #[test]
    fn ties_go_to_the_answer_reached_first() {
        let mut tally = Tally::default();
        for a in ["7", "9", "9", "7", "1"] {
            tally.add(vote(a, -0.1));
        }
        assert_eq!(tally.leader(), Some(("7", 2, 2)));
        assert_eq!(
            tally.winner(&ConsistencyOptions::default()).as_deref(),
            Some("7")
        );
    }

    #[test]
    fn a_confidence_vote_weighs_each_trace_by_its_geometric_mean_probability() {
        let mut tally = Tally::default();
        // Two unsure traces say 7 (e^-2 each: 0.27 together), one sure trace says 9.
        tally.add(vote("7", -2.0));
        tally.add(vote("9", -0.1));
        tally.add(vote("7", -2.0));
        let majority = ConsistencyOptions::default();
        assert_eq!(tally.winner(&majority).as_deref(), Some("7"));
        let weighted = ConsistencyOptions {
            vote: Vote::Confidence,
            ..ConsistencyOptions::default()
        };
        assert_eq!(tally.winner(&weighted).as_deref(), Some("9"));
        // Stopping counts plain votes whatever the vote.
        assert_eq!(tally.leader(), Some(("7", 2, 1)));
    }

    #[test]
    fn keep_lets_only_the_most_confident_traces_with_an_answer_vote() {
        let mut tally = Tally::default();
        for (a, c) in [
            ("5", -0.9),
            ("", -0.01),
            ("8", -0.2),
            ("5", -0.8),
            ("8", -0.3),
        ] {
            tally.add(vote(a, c));
        }
        let keep = |keep| ConsistencyOptions {
            keep,
            ..ConsistencyOptions::default()
        };
        // Four traces answer; keep 0.5 keeps ⌈2⌉ of them, the two 8s, in draw order.
        assert_eq!(tally.voters(&keep(0.5)), vec![2, 4]);
        assert_eq!(tally.winner(&keep(0.5)).as_deref(), Some("8"));
        // DeepConf-low's 10% still keeps one trace.
        assert_eq!(tally.voters(&keep(0.1)), vec![2]);
        // All of them: a 2–2 tie goes to the answer reached first.
        assert_eq!(tally.voters(&keep(1.0)), vec![0, 2, 3, 4]);
        assert_eq!(tally.winner(&keep(1.0)).as_deref(), Some("5"));
    }

    /// Trace j answers `answers[j]` at mean log-probability `confidences[j]`.
    fn scripted(answers: &'static [&str], confidences: &'static [f32]) -> ScriptedBackend {
        ScriptedBackend::new(move |request| {
            let j = (request.sampling.seed - 7) as usize;
            let mut c = completion(
                &format!("so \\boxed{{{}}}", answers[j]),
                Usage {
                    output_tokens: 10,
                    ..Usage::default()
                },
            );
            c.logprobs = vec![
                crate::TokenLogprob {
                    text: "x".into(),
                    logprob: confidences[j],
                    top: Vec::new(),
                };
                10
            ];
            c
        })
    }

    #[test]
    fn a_filtered_vote_answers_with_the_confident_traces_and_marks_the_dropped() {
        let backend =
            scripted(&["5", "8", "5", "8", "5"], &[-1.5, -0.1, -1.2, -0.2, -1.0]).with_logprobs();
        let mut request = CompletionRequest::chat(
            vec![crate::ChatMessage::new("user", "Q?")],
            crate::SamplerConfig::default(),
            64,
        );
        request.sampling.seed = 7;
        let options = ConsistencyOptions {
            rule: StopRule::Fixed,
            keep: 0.4,
            ..ConsistencyOptions::default()
        };
        let c = complete(&backend, &request, &options).unwrap();
        assert_eq!(c.text, "so \\boxed{8}");
        let kinds: Vec<&str> = c
            .events
            .iter()
            .filter(|e| e.kind.starts_with("trace"))
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "trace-dropped",
                "trace",
                "trace-dropped",
                "trace",
                "trace-dropped"
            ]
        );
        // Every trace drawn is paid for, dropped or not.
        assert_eq!(c.usage.output_tokens, 50);
        let plain = complete(
            &backend,
            &request,
            &ConsistencyOptions {
                keep: 1.0,
                ..options.clone()
            },
        );
        assert_eq!(plain.unwrap().text, "so \\boxed{5}");
    }

    #[test]
    fn a_confidence_vote_on_a_backend_without_logprobs_is_refused_before_drawing() {
        let backend = scripted(&["5"], &[-0.1]);
        let options = ConsistencyOptions {
            vote: Vote::Confidence,
            ..ConsistencyOptions::default()
        };
        let mut request = CompletionRequest::chat(
            vec![crate::ChatMessage::new("user", "Q?")],
            crate::SamplerConfig::default(),
            64,
        );
        request.sampling.seed = 7;
        let err = complete(&backend, &request, &options).unwrap_err();
        assert!(err.to_string().contains("log-probabilities"), "{err}");
        assert!(backend.requests().is_empty());
    }

    #[test]
    fn a_trace_answer_is_its_box_or_its_last_number() {
        assert_eq!(trace_answer("so \\boxed{1,200}."), Some("1200".into()));
        assert_eq!(trace_answer("She pays $18.50 in all."), Some("18.5".into()));
        assert_eq!(trace_answer("a loss of -4"), Some("-4".into()));
        assert_eq!(trace_answer("no idea"), None);
    }
}
