//! End-to-end tests of `run_eval`: records, resume after a torn write, the
//! generation cache, summaries and the files of a run directory.
//!
//! `ScriptedAnswerer` is a test double for a model backend (a legitimate stand-in:
//! the runner's contract is the `Backend` trait, not any particular engine). It
//! answers from a script keyed by question, counts its calls, and can be told to
//! fail on one question to simulate a crash mid-run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use terse_eval::dataset::Problem;
use terse_eval::extract::Rule;
use terse_eval::record::{read_records, RECORDS_FILE};
use terse_eval::run::{run_eval, Progress, PromptTemplate, RunConfig, RunError};
use terse_reason::{
    Backend, BackendError, Capabilities, Completion, CompletionRequest, Finish, Prompt, Sink, Usage,
};

struct ScriptedAnswerer {
    script: HashMap<String, (String, u64)>,
    calls: Mutex<Vec<String>>,
    fail_on: Option<String>,
}

impl ScriptedAnswerer {
    fn new(problems: &[Problem]) -> Self {
        let script = problems
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (text, tokens) = match i % 4 {
                    0 => (format!("Reasoning...\n#### {}", p.gold), 100 + i as u64),
                    1 => (
                        format!("So the answer is \\boxed{{{}}}", p.gold),
                        200 + i as u64,
                    ),
                    2 => ("I think it is 99999".to_string(), 300 + i as u64),
                    _ => (
                        "\u{fffd}\u{0} garbled output \\boxed{".to_string(),
                        400 + i as u64,
                    ),
                };
                (p.question.clone(), (text, tokens))
            })
            .collect();
        ScriptedAnswerer {
            script,
            calls: Mutex::new(Vec::new()),
            fail_on: None,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn messages(request: &CompletionRequest) -> &[terse_reason::ChatMessage] {
    match &request.prompt {
        Prompt::Chat(messages) => messages,
        Prompt::Text(_) => &[],
    }
}

impl Backend for ScriptedAnswerer {
    fn fingerprint(&self) -> String {
        "scripted-v1".into()
    }

    fn render(&self, request: &CompletionRequest) -> Result<String, BackendError> {
        Ok(messages(request)
            .iter()
            .map(|m| format!("<{}>{}", m.role, m.content))
            .collect())
    }

    fn difficulty(
        &self,
        _request: &CompletionRequest,
        _probe: Option<&std::path::Path>,
    ) -> Result<terse_reason::adaptive::Difficulty, BackendError> {
        Err(BackendError::Generation(
            "a scripted answerer has no hidden states".into(),
        ))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            logits: false,
            hidden_states: false,
            logprobs: false,
        }
    }

    fn complete_streaming(
        &self,
        request: &CompletionRequest,
        _sink: Sink<'_>,
    ) -> Result<Completion, BackendError> {
        let question = messages(request)
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        if self.fail_on.as_deref() == Some(question.as_str()) {
            return Err(BackendError::Generation("simulated backend crash".into()));
        }
        self.calls.lock().unwrap().push(question.clone());
        let (text, tokens) = self
            .script
            .get(&question)
            .cloned()
            .ok_or(BackendError::Generation("question not in script".into()))?;
        Ok(Completion {
            text,
            reasoning: None,
            usage: Usage {
                prompt_tokens: 20,
                output_tokens: tokens,
                ..Usage::default()
            },
            finish: Finish::Stop,
            stop_reason: "eos".into(),
            events: Vec::new(),
            latency_s: 0.5,
            engine_time: None,
            logprobs: Vec::new(),
        })
    }
}

fn problems(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| Problem {
            id: format!("p{i:02}"),
            question: format!("What is {i} + {i}?"),
            gold: (2 * i).to_string(),
            meta: serde_json::Value::Null,
        })
        .collect()
}

fn config() -> RunConfig {
    RunConfig {
        label: "scripted".into(),
        prompt: PromptTemplate {
            system: None,
            user: "{question}".into(),
        },
        ..RunConfig::default()
    }
}

/// Cuts records.jsonl after `keep` complete lines plus half of the next line, as a
/// SIGKILL in the middle of a write would.
fn tear_records(dir: &Path, keep: usize) {
    let path = dir.join(RECORDS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut torn: String = lines[..keep].iter().map(|l| format!("{l}\n")).collect();
    torn.push_str(&lines[keep][..lines[keep].len() / 2]);
    std::fs::write(&path, torn).unwrap();
}

#[test]
fn full_run_writes_records_summary_report_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let problems = problems(8);
    let answerer = ScriptedAnswerer::new(&problems);
    let summary = run_eval(
        &problems,
        &answerer,
        &config(),
        dir.path(),
        Progress::Hidden,
    )
    .unwrap();

    // i % 4 == 0 (hashes) and 1 (boxed) are right; 2 is a wrong last number; 3 is
    // garbage with no extractable answer: scored as a failure, not a crash.
    assert_eq!(summary.n, 8);
    assert_eq!(summary.correct, 4);
    assert_eq!(summary.accuracy, Some(0.5));
    assert_eq!(summary.correct_strict, 4);
    assert_eq!(summary.extraction_failures, 2);
    assert_eq!(summary.rules["hashes"], 2);
    assert_eq!(summary.rules["boxed"], 2);
    assert_eq!(summary.rules["last_number"], 2);
    assert_eq!(summary.rules["none"], 2);
    let tokens: Vec<u64> = (0..8u64).map(|i| (i % 4 + 1) * 100 + i).collect();
    let total: u64 = tokens.iter().sum();
    assert_eq!(summary.output_tokens_total, total);
    assert_eq!(summary.output_tokens_mean, Some(total as f64 / 8.0));
    assert_eq!(summary.tokens_per_correct, Some(total as f64 / 4.0));
    let correct_tokens = [100.0, 201.0, 104.0, 205.0];
    assert_eq!(
        summary.output_tokens_correct_mean,
        Some(correct_tokens.iter().sum::<f64>() / 4.0)
    );
    assert_eq!(summary.latency_mean_s, Some(0.5));
    assert_eq!(summary.throughput_tokens_per_s, Some(total as f64 / 4.0));

    let records = read_records(&dir.path().join(RECORDS_FILE))
        .unwrap()
        .records;
    assert_eq!(records.len(), 8);
    assert_eq!(records[0].id, "p00");
    assert_eq!(records[0].prompt, "<user>What is 0 + 0?");
    assert_eq!(records[1].rule, Rule::Boxed);
    assert_eq!(records[2].extracted.as_deref(), Some("99999"));
    assert!(!records[2].correct);
    assert_eq!(records[3].extracted, None);
    assert_eq!(records[3].usage.prompt_tokens, 20);

    for file in [
        "config.json",
        "summary.json",
        "report.md",
        "tokens_hist.png",
        "tokens_hist.svg",
        "accuracy_vs_tokens.png",
        "accuracy_vs_tokens.svg",
    ] {
        assert!(dir.path().join(file).is_file(), "missing {file}");
    }
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["accuracy"], 0.5);
    assert_eq!(on_disk["n"], 8);
    assert!(on_disk["accuracy_ci95"][0].as_f64().unwrap() < 0.5);
}

#[test]
fn resume_after_torn_write_recomputes_only_unfinished_problems() {
    let dir = tempfile::tempdir().unwrap();
    let problems = problems(10);
    let first = ScriptedAnswerer::new(&problems);
    let complete = run_eval(&problems, &first, &config(), dir.path(), Progress::Hidden).unwrap();
    assert_eq!(first.calls().len(), 10);

    tear_records(dir.path(), 6);
    let mut resume = config();
    resume.resume = true;
    let second = ScriptedAnswerer::new(&problems);
    let resumed = run_eval(&problems, &second, &resume, dir.path(), Progress::Hidden).unwrap();

    // Only the torn record and the four never written are asked again.
    let expected: Vec<String> = problems[6..].iter().map(|p| p.question.clone()).collect();
    assert_eq!(second.calls(), expected);
    assert_eq!(resumed.n, 10);
    assert_eq!(resumed.correct, complete.correct);
    assert_eq!(resumed.output_tokens_total, complete.output_tokens_total);
    assert_eq!(resumed.accuracy, complete.accuracy);
    let ids: Vec<String> = read_records(&dir.path().join(RECORDS_FILE))
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    let expected_ids: Vec<String> = problems.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, expected_ids);

    // A second resume finds everything done and asks nothing.
    let third = ScriptedAnswerer::new(&problems);
    let again = run_eval(&problems, &third, &resume, dir.path(), Progress::Hidden).unwrap();
    assert!(third.calls().is_empty());
    assert_eq!(again.n, 10);
}

#[test]
fn generation_cache_serves_torn_records_without_calling_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let problems = problems(6);
    let mut cached_config = config();
    cached_config.cache_dir = Some(cache.path().to_path_buf());
    let first = ScriptedAnswerer::new(&problems);
    run_eval(
        &problems,
        &first,
        &cached_config,
        dir.path(),
        Progress::Hidden,
    )
    .unwrap();
    assert_eq!(first.calls().len(), 6);

    tear_records(dir.path(), 2);
    cached_config.resume = true;
    let second = ScriptedAnswerer::new(&problems);
    let summary = run_eval(
        &problems,
        &second,
        &cached_config,
        dir.path(),
        Progress::Hidden,
    )
    .unwrap();
    assert!(second.calls().is_empty(), "called {:?}", second.calls());
    assert_eq!(summary.cached, 4);
    assert_eq!(summary.n, 6);

    // A fresh run directory with the same cache costs no model calls either.
    let other_dir = tempfile::tempdir().unwrap();
    cached_config.resume = false;
    let third = ScriptedAnswerer::new(&problems);
    run_eval(
        &problems,
        &third,
        &cached_config,
        other_dir.path(),
        Progress::Hidden,
    )
    .unwrap();
    assert!(third.calls().is_empty());
}

#[test]
fn backend_failure_stops_the_run_and_keeps_finished_records() {
    let dir = tempfile::tempdir().unwrap();
    let problems = problems(5);
    let mut failing = ScriptedAnswerer::new(&problems);
    failing.fail_on = Some(problems[3].question.clone());
    let err = run_eval(&problems, &failing, &config(), dir.path(), Progress::Hidden).unwrap_err();
    match &err {
        RunError::Answer { id, sample, .. } => assert_eq!((id.as_str(), *sample), ("p03", 0)),
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("simulated backend crash"));
    let kept = read_records(&dir.path().join(RECORDS_FILE))
        .unwrap()
        .records;
    assert_eq!(kept.len(), 3);

    let mut resume = config();
    resume.resume = true;
    let healthy = ScriptedAnswerer::new(&problems);
    let summary = run_eval(&problems, &healthy, &resume, dir.path(), Progress::Hidden).unwrap();
    assert_eq!(healthy.calls().len(), 2);
    assert_eq!(summary.n, 5);
}

#[test]
fn existing_run_needs_resume_and_a_matching_config() {
    let dir = tempfile::tempdir().unwrap();
    let problems = problems(2);
    let answerer = ScriptedAnswerer::new(&problems);
    run_eval(
        &problems,
        &answerer,
        &config(),
        dir.path(),
        Progress::Hidden,
    )
    .unwrap();

    let err = run_eval(
        &problems,
        &answerer,
        &config(),
        dir.path(),
        Progress::Hidden,
    )
    .unwrap_err();
    assert!(
        matches!(err, RunError::AlreadyStarted { count: 2, .. }),
        "{err}"
    );

    let mut changed = config();
    changed.resume = true;
    changed.sampling.temperature = 0.7;
    let err = run_eval(&problems, &answerer, &changed, dir.path(), Progress::Hidden).unwrap_err();
    assert!(matches!(err, RunError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("sampling parameters"));
}

#[test]
fn several_samples_per_problem_use_distinct_seeds_and_report_pass_at_k() {
    let dir = tempfile::tempdir().unwrap();
    let problems = problems(4);
    let answerer = ScriptedAnswerer::new(&problems);
    let mut config = config();
    config.samples_per_problem = 3;
    config.sampling.seed = 40;
    let summary = run_eval(&problems, &answerer, &config, dir.path(), Progress::Hidden).unwrap();
    assert_eq!(summary.n, 12);
    assert_eq!(summary.samples_per_problem, 3);
    // The scripted model is deterministic: pass@k equals accuracy for every k.
    assert_eq!(summary.pass_at_k["1"], 0.5);
    assert_eq!(summary.pass_at_k["3"], 0.5);
    let seeds: Vec<u64> = read_records(&dir.path().join(RECORDS_FILE))
        .unwrap()
        .records
        .iter()
        .filter(|r| r.id == "p00")
        .map(|r| r.seed)
        .collect();
    assert_eq!(seeds, [40, 41, 42]);
}

#[test]
fn concurrent_workers_record_every_problem_once() {
    let (one, many) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let problems = problems(13);
    let sequential = run_eval(
        &problems,
        &ScriptedAnswerer::new(&problems),
        &config(),
        one.path(),
        Progress::Hidden,
    )
    .unwrap();
    let answerer = ScriptedAnswerer::new(&problems);
    let mut concurrent_config = config();
    concurrent_config.concurrency = 4;
    let concurrent = run_eval(
        &problems,
        &answerer,
        &concurrent_config,
        many.path(),
        Progress::Hidden,
    )
    .unwrap();
    assert_eq!(answerer.calls().len(), 13);
    let by_id = |dir: &Path| {
        let mut records = read_records(&dir.join(RECORDS_FILE)).unwrap().records;
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
            .into_iter()
            .map(|r| (r.id, r.output, r.correct))
            .collect::<Vec<_>>()
    };
    assert_eq!(by_id(one.path()), by_id(many.path()));
    assert_eq!(sequential.correct, concurrent.correct);
}
