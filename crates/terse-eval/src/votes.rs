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
use terse_reason::consistency::{replay, trace_answer, ConsistencyOptions, TraceVote};

/// The text a trace event carries when the trace gave no answer.
const NO_ANSWER: &str = "(no answer)";

/// One trace of a record: its vote and its cost in decoded tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedTrace {
    pub vote: TraceVote,
    pub output_tokens: u64,
}

/// The traces of a record, in draw order.
pub fn recorded_traces(record: &Record) -> Vec<RecordedTrace> {
    record
        .events
        .iter()
        .filter(|e| e.strategy == "consistency" && e.kind.starts_with("trace"))
        .map(|e| RecordedTrace {
            vote: TraceVote {
                answer: e.detail.clone().filter(|d| d != NO_ANSWER),
                confidence: e.logprob,
            },
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
    #[error("problem '{id}' of the consistency run is not in the greedy run")]
    MissingGreedy { id: String },
}

/// The records of a `fixed` run with each first trace replaced by the greedy run's
/// answer to the same problem: the traces a `first_greedy` rule draws. Its trace
/// j ≥ 1 samples with seed + j at the run's temperature, as the fixed run's trace j
/// does, so only trace 0 differs. The greedy trace carries no confidence (a plain run
/// records no log-probabilities). `correct` stays the fixed run's, so lost and gained
/// are counted against it.
pub fn with_greedy_first(
    records: &[Record],
    greedy: &[Record],
) -> Result<Vec<Record>, VoteReplayError> {
    records
        .iter()
        .map(|r| {
            let g = greedy
                .iter()
                .find(|g| g.id == r.id)
                .ok_or_else(|| VoteReplayError::MissingGreedy { id: r.id.clone() })?;
            let mut r = r.clone();
            let graded = match (&g.reasoning, g.output.trim().is_empty()) {
                (Some(reasoning), true) => reasoning.as_str(),
                _ => g.output.as_str(),
            };
            let first = r
                .events
                .iter_mut()
                .find(|e| e.strategy == "consistency" && e.kind.starts_with("trace"));
            if let Some(e) = first {
                e.detail = Some(trace_answer(graded).unwrap_or_else(|| NO_ANSWER.into()));
                e.at_token = g.usage.output_tokens;
                e.logprob = None;
            }
            Ok(r)
        })
        .collect()
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
        let recorded = recorded_traces(r);
        let votes: Vec<TraceVote> = recorded.iter().map(|t| t.vote.clone()).collect();
        let replayed = replay(&votes, options).ok_or_else(|| VoteReplayError::TooFewTraces {
            id: r.id.clone(),
            have: recorded.len(),
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
        cost += recorded[..replayed.drawn]
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
    fn a_replayed_confidence_vote_reads_each_traces_recorded_confidence() {
        let mut r = record("9", &[("7", 100), ("9", 90), ("7", 80)]);
        for (e, c) in r.events.iter_mut().zip([-2.0, -0.1, -2.0]) {
            e.logprob = Some(c);
        }
        r.correct = false;
        let fixed = |vote: &str| {
            let spec = terse_reason::StrategySpec::parse(
                "consistency",
                &[
                    "rule=fixed".into(),
                    "max_samples=3".into(),
                    format!("vote={vote}"),
                ],
            )
            .unwrap();
            spec.consistency().unwrap().clone()
        };
        let plain = replay_votes(
            std::slice::from_ref(&r),
            &fixed("majority"),
            &GradeOptions::default(),
        );
        assert_eq!(plain.unwrap().correct, 0);
        let weighted = replay_votes(&[r], &fixed("confidence"), &GradeOptions::default()).unwrap();
        assert_eq!(
            (weighted.correct, weighted.gained, weighted.cost_mean),
            (1, 1, 270.0)
        );
    }

    #[test]
    fn a_greedy_first_trace_replaces_trace_zero_and_keeps_the_samples() {
        let fixed = record("72", &[("48", 100), ("72", 80), ("72", 90)]);
        let mut greedy = crate::record::tests::record("p", true, 0);
        greedy.output = "She has 70 + 2 = \\boxed{72} apples.".into();
        greedy.usage.output_tokens = 60;
        let replaced = with_greedy_first(std::slice::from_ref(&fixed), &[greedy]).unwrap();
        let traces = recorded_traces(&replaced[0]);
        assert_eq!(traces[0].vote.answer.as_deref(), Some("72"));
        assert_eq!(
            (traces[0].output_tokens, traces[0].vote.confidence),
            (60, None)
        );
        assert_eq!(traces[1..], recorded_traces(&fixed)[1..]);
        // The greedy check: stop when the first sample agrees with the greedy trace.
        let check = ConsistencyOptions {
            rule: StopRule::Window,
            window: 2,
            max_samples: 3,
            first_greedy: true,
            ..Default::default()
        };
        let s = replay_votes(&replaced, &check, &GradeOptions::default()).unwrap();
        assert_eq!((s.correct, s.traces_mean, s.cost_mean), (1, 2.0, 140.0));
        let mut elsewhere = crate::record::tests::record("q", true, 0);
        elsewhere.output = "72".into();
        assert_eq!(
            with_greedy_first(&[fixed], &[elsewhere]).unwrap_err(),
            VoteReplayError::MissingGreedy { id: "p".into() }
        );
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
