//! What a `probe-trace` run tells: where answers settle in a trace, the oracle bound
//! of early exit, and how any early-exit stop rule would have done on the same traces.
//!
//! A `probe-trace` run decodes exactly as plain decoding (probes never change their
//! parent) and records, every k tokens, the answer the model gives when forced to
//! answer there. From those records:
//!
//! - the **oracle bound**: stop each answer that ends right at the first probe from
//!   which every forced answer is right (and keep every other answer whole), paying
//!   one probe. No stop rule that keeps accuracy can cost less.
//! - a **simulation** of early exit (`every`, `window`, `min_logprob`): early exit's
//!   probes are forked at the same points with the same text, so on greedy traces
//!   they give the same answers; the simulated answer is the agreed probe answer where
//!   the rule fires (at the token where the deciding probe comes back) and the plain
//!   answer elsewhere. This lets a stop rule be tuned on training data without
//!   running it, and is checked against real `early-exit` runs.

use crate::grade::{grade, GradeOptions};
use crate::record::Record;
use serde::Serialize;

/// One probe of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePoint {
    /// Output tokens when the probe was forked.
    pub at_token: u64,
    pub answer: String,
    pub hedged: bool,
    pub logprob: Option<f32>,
    /// Prefilled and decoded tokens.
    pub tokens: [u64; 2],
    pub right: bool,
}

/// The probes of a record, in order.
pub fn probe_points(record: &Record, options: &GradeOptions) -> Vec<ProbePoint> {
    record
        .events
        .iter()
        .filter(|e| e.kind == "probe")
        .map(|e| {
            let detail = e.detail.as_deref().unwrap_or("");
            let (answer, hedged) = match detail.split_once(" (hedged") {
                Some((a, _)) => (a.to_string(), true),
                None => (detail.to_string(), false),
            };
            let right = !answer.is_empty() && grade(&answer, &record.gold, options);
            ProbePoint {
                at_token: e.at_token,
                answer,
                hedged,
                logprob: e.logprob,
                tokens: e.probe_tokens.unwrap_or([0, 0]),
                right,
            }
        })
        .collect()
}

/// The oracle bound over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Oracle {
    pub records: usize,
    pub correct: usize,
    /// Mean output tokens of the plain answers.
    pub output_tokens_mean: f64,
    /// Mean cost tokens of the oracle (right answers cut where they settled, plus
    /// one probe; others whole).
    pub oracle_cost_mean: f64,
    /// Of the right answers: mean fraction of the trace at which the answer had
    /// settled (forced answers right from there on).
    pub settled_fraction_mean: Option<f64>,
    /// Of the right answers: mean fraction at which a forced answer was first right.
    pub first_right_fraction_mean: Option<f64>,
}

pub fn oracle(records: &[Record], options: &GradeOptions) -> Oracle {
    let mut cost = 0.0;
    let mut settled = Vec::new();
    let mut first_right = Vec::new();
    for r in records {
        let out = r.usage.output_tokens as f64;
        let points = probe_points(r, options);
        let settle = points
            .iter()
            .rposition(|p| !p.right)
            .map_or(Some(0), |i| (i + 1 < points.len()).then_some(i + 1));
        match (r.correct, settle.and_then(|i| points.get(i))) {
            (true, Some(p)) => {
                let stop = (p.at_token + 1 + p.tokens[1]) as f64;
                cost += stop.min(out) + (p.tokens[0] + p.tokens[1]) as f64;
                settled.push(p.at_token as f64 / out.max(1.0));
            }
            _ => cost += out,
        }
        if r.correct {
            if let Some(p) = points.iter().find(|p| p.right) {
                first_right.push(p.at_token as f64 / out.max(1.0));
            }
        }
    }
    let n = records.len().max(1) as f64;
    Oracle {
        records: records.len(),
        correct: records.iter().filter(|r| r.correct).count(),
        output_tokens_mean: records
            .iter()
            .map(|r| r.usage.output_tokens as f64)
            .sum::<f64>()
            / n,
        oracle_cost_mean: cost / n,
        settled_fraction_mean: crate::stats::mean(&settled),
        first_right_fraction_mean: crate::stats::mean(&first_right),
    }
}

/// An early-exit stop rule to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StopRule {
    /// Tokens between probes (a multiple of the trace's probe spacing).
    pub every: u64,
    pub window: usize,
    pub min_logprob: Option<f32>,
}

/// How a stop rule would have done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulated {
    pub rule: StopRule,
    pub correct: usize,
    pub exits: usize,
    /// Mean output + probe tokens.
    pub cost_mean: f64,
    /// Answers right plainly but wrong with the rule, and the reverse.
    pub lost: usize,
    pub gained: usize,
}

pub fn simulate(records: &[Record], rule: StopRule, options: &GradeOptions) -> Simulated {
    let mut sim = Simulated {
        rule,
        correct: 0,
        exits: 0,
        cost_mean: 0.0,
        lost: 0,
        gained: 0,
    };
    let mut cost = 0.0;
    for r in records {
        let out = r.usage.output_tokens;
        let points: Vec<ProbePoint> = probe_points(r, options)
            .into_iter()
            .filter(|p| p.at_token % rule.every == 0)
            .collect();
        let mut spent = 0u64;
        let mut result = (out, r.correct);
        for i in 0..points.len() {
            let p = &points[i];
            let arrives = p.at_token + 1 + p.tokens[1];
            if arrives >= out {
                break;
            }
            spent += p.tokens[0] + p.tokens[1];
            let Some(window) = points.get((i + 1).saturating_sub(rule.window)..=i) else {
                continue;
            };
            let agree = i + 1 >= rule.window
                && window
                    .iter()
                    .all(|w| !w.hedged && !w.answer.is_empty() && w.answer == p.answer);
            let confident = rule
                .min_logprob
                .is_none_or(|t| p.logprob.is_some_and(|l| l >= t));
            if agree && confident {
                sim.exits += 1;
                result = (arrives, p.right);
                break;
            }
        }
        cost += (result.0 + spent) as f64;
        sim.correct += usize::from(result.1);
        sim.lost += usize::from(r.correct && !result.1);
        sim.gained += usize::from(!r.correct && result.1);
    }
    sim.cost_mean = cost / records.len().max(1) as f64;
    sim
}

#[cfg(test)]
mod tests {
    use super::*;
    use terse_reason::StrategyEvent;

    fn record(gold: &str, output_tokens: u64, probes: &[(u64, &str, f32)]) -> Record {
        let mut r = crate::record::tests::record("p", true, output_tokens);
        r.gold = gold.into();
        r.correct = true;
        r.events = probes
            .iter()
            .map(|&(at, answer, logprob)| StrategyEvent {
                strategy: "probe-trace".into(),
                kind: "probe".into(),
                at_token: at,
                detail: Some(answer.into()),
                logprob: Some(logprob),
                probe_tokens: Some([7, 3]),
            })
            .collect();
        r
    }

    #[test]
    fn the_oracle_stops_where_forced_answers_stay_right() {
        let r = record(
            "72",
            100,
            &[
                (16, "48", -0.1),
                (32, "72", -0.1),
                (48, "24", -0.1),
                (64, "72", -0.1),
                (80, "72", -0.1),
            ],
        );
        let o = oracle(&[r], &GradeOptions::default());
        // Settled at the probe at 64: stop when it returns (64 + 1 + 3) and pay it.
        assert_eq!(o.oracle_cost_mean, 68.0 + 10.0);
        assert_eq!(o.settled_fraction_mean, Some(0.64));
        assert_eq!(o.first_right_fraction_mean, Some(0.32));
    }

    #[test]
    fn a_simulated_rule_exits_on_agreement_and_counts_its_probes() {
        let r = record(
            "72",
            100,
            &[
                (16, "48", -0.1),
                (32, "72", -0.1),
                (48, "72", -0.1),
                (64, "72", -2.0),
            ],
        );
        let rule = StopRule {
            every: 16,
            window: 2,
            min_logprob: None,
        };
        let s = simulate(std::slice::from_ref(&r), rule, &GradeOptions::default());
        assert_eq!((s.exits, s.correct), (1, 1));
        // Exit when the probe at 48 returns (52), three probes of 10 tokens paid.
        assert_eq!(s.cost_mean, 52.0 + 30.0);
        let strict = StopRule {
            min_logprob: Some(-1.0),
            window: 3,
            ..rule
        };
        let s = simulate(&[r], strict, &GradeOptions::default());
        assert_eq!(s.exits, 0, "the third agreeing probe is unsure");
        assert_eq!(s.cost_mean, 100.0 + 40.0);
    }

    #[test]
    fn an_early_wrong_agreement_loses_the_answer() {
        let r = record("72", 100, &[(32, "48", -0.1), (64, "48", -0.1)]);
        let s = simulate(
            &[r],
            StopRule {
                every: 32,
                window: 2,
                min_logprob: None,
            },
            &GradeOptions::default(),
        );
        assert_eq!((s.correct, s.lost), (0, 1));
    }
}
