//! What a `fixed` self-consistency run tells: how any adaptive stopping rule would
//! have done on the same traces.
//!
//! Trace `j` of a problem samples with seed `seed + j` whatever the stopping rule, so
//! a rule that stops after m traces draws exactly the first m traces of a `fixed` run
//! with the same seed and `max_samples` at least m (checked by the strategy tests).
//! Each record of such a run keeps every trace's answer and output tokens as
//! `consistency` events; replaying a rule over them with the engine's own stopping
//! code ([`terse_reason::consistency::replay`]) gives its accuracy and cost without
//! running it. Checked against real runs of the same rules.

use crate::grade::{grade, GradeOptions};
use crate::record::Record;
use serde::Serialize;
use terse_reason::consistency::{replay, ConsistencyOptions};

/// The text a trace event carries when the trace gave no answer.
const NO_ANSWER: &str = "(no answer)";

/// One trace of a record: its answer and its cost in decoded tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceVote {
    pub answer: Option<String>,
    pub output_tokens: u64,
}

/// The traces of a record, in draw order.
pub fn trace_votes(record: &Record) -> Vec<TraceVote> {
    record
        .events
        .iter()
        .filter(|e| e.strategy == "consistency" && e.kind.starts_with("trace"))
        .map(|e| TraceVote {
            answer: e.detail.clone().filter(|d| d != NO_ANSWER),
            output_tokens: e.at_token,
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VoteReplayError {
    #[error(
        "record '{id}' ran strategy '{strategy}': only a plain `consistency` run can be \
         replayed (other stages add tokens the trace events do not carry)"
    )]
    NotPlainConsistency { id: String, strategy: String },
    #[error(
        "record '{id}' holds {have} traces; the rule needs more (run with a larger max_samples)"
    )]
    TooFewTraces { id: String, have: usize },
}

/// How a stopping rule would have done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoteReplay {
    pub correct: usize,
    /// Answers right in the recorded run but wrong with the rule, and the reverse.
    pub lost: usize,
    pub gained: usize,
    /// Problems where the rule settled before its `max_samples`.
    pub settled: usize,
    pub traces_mean: f64,
    /// Mean decoded tokens over the traces drawn (the cost tokens of plain
    /// `consistency`: it neither probes nor injects).
    pub cost_mean: f64,
}

pub fn replay_votes(
    records: &[Record],
    options: &ConsistencyOptions,
    grade_options: &GradeOptions,
) -> Result<VoteReplay, VoteReplayError> {
    let mut sim = VoteReplay {
        correct: 0,
        lost: 0,
        gained: 0,
        settled: 0,
        traces_mean: 0.0,
        cost_mean: 0.0,
    };
    let (mut traces, mut cost) = (0usize, 0u64);
    for r in records {
        if r.strategy != "consistency" {
            return Err(VoteReplayError::NotPlainConsistency {
                id: r.id.clone(),
                strategy: r.strategy.clone(),
            });
        }
        let votes = trace_votes(r);
        let answers: Vec<Option<String>> = votes.iter().map(|v| v.answer.clone()).collect();
        let replayed = replay(&answers, options).ok_or_else(|| VoteReplayError::TooFewTraces {
            id: r.id.clone(),
            have: votes.len(),
        })?;
        let right = replayed
            .answer
            .as_deref()
            .is_some_and(|a| grade(a, &r.gold, grade_options));
        sim.correct += usize::from(right);
        sim.lost += usize::from(r.correct && !right);
        sim.gained += usize::from(!r.correct && right);
        sim.settled += usize::from(replayed.settled);
        traces += replayed.drawn;
        cost += votes[..replayed.drawn]
            .iter()
            .map(|v| v.output_tokens)
            .sum::<u64>();
    }
    let n = records.len().max(1) as f64;
    sim.traces_mean = traces as f64 / n;
    sim.cost_mean = cost as f64 / n;
    Ok(sim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use terse_reason::consistency::StopRule;
    use terse_reason::StrategyEvent;

    fn record(gold: &str, traces: &[(&str, u64)]) -> Record {
        let mut r = crate::record::tests::record("p", true, 0);
        r.strategy = "consistency".into();
        r.gold = gold.into();
        r.events = traces
            .iter()
            .map(|&(answer, tokens)| StrategyEvent {
                strategy: "consistency".into(),
                kind: "trace".into(),
                at_token: tokens,
                detail: Some(answer.into()),
                logprob: Some(-0.2),
                probe_tokens: None,
            })
            .collect();
        r
    }

    #[test]
    fn a_replayed_rule_pays_only_the_traces_it_draws() {
        let r = record(
            "72",
            &[
                ("72", 100),
                (NO_ANSWER, 50),
                ("72", 80),
                ("48", 90),
                ("72", 70),
            ],
        );
        let window = ConsistencyOptions {
            rule: StopRule::Window,
            window: 1,
            ..Default::default()
        };
        let s = replay_votes(std::slice::from_ref(&r), &window, &GradeOptions::default()).unwrap();
        assert_eq!(
            (s.correct, s.settled, s.traces_mean, s.cost_mean),
            (1, 1, 1.0, 100.0)
        );
        let fixed = ConsistencyOptions {
            rule: StopRule::Fixed,
            ..Default::default()
        };
        let s = replay_votes(&[r], &fixed, &GradeOptions::default()).unwrap();
        assert_eq!((s.correct, s.settled, s.cost_mean), (1, 0, 390.0));
    }

    #[test]
    fn a_run_with_other_stages_or_too_few_traces_is_refused() {
        let mut r = record("72", &[("72", 100), ("72", 80)]);
        let fixed = ConsistencyOptions {
            rule: StopRule::Fixed,
            ..Default::default()
        };
        let err = replay_votes(std::slice::from_ref(&r), &fixed, &GradeOptions::default());
        assert_eq!(
            err,
            Err(VoteReplayError::TooFewTraces {
                id: "p".into(),
                have: 2
            })
        );
        r.strategy = "loop-guard+consistency".into();
        let err = replay_votes(&[r], &fixed, &GradeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("loop-guard+consistency"), "{err}");
    }
}
