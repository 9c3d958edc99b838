//! The eval loop: pose problems to a [`Backend`], score, record, summarise.
//!
//! The runner knows nothing of engines: each problem becomes one
//! [`CompletionRequest`] (the prompt, the sampling, the strategy) for any backend (the
//! local engine, a remote OpenAI-compatible server, a test double). A run directory holds `config.json` (what was run), `records.jsonl` (one
//! line per finished problem, flushed immediately), `summary.json`, `report.md` and
//! the plots. Work is never lost: finished (id, sample) pairs are skipped on resume,
//! and every generation goes through the content-addressed [`GenerationCache`] when
//! one is configured, so even a generation whose record was torn by a kill is not
//! recomputed. With `concurrency` N, N workers keep N requests in flight (the local
//! backend batches them into shared forward passes); records are written in the
//! order problems finish.

use crate::cache::{cache_key, CacheError, GenerationCache};
use crate::dataset::Problem;
use crate::extract::ExtractOptions;
use crate::grade::{grade_text, GradeOptions};
use crate::record::{Record, RecordError, RunWriter};
use crate::report::{self, ReportError, Summary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;
use terse_reason::{
    Backend, BackendError, ChatMessage, CompletionRequest, SamplerConfig, StrategySpec,
};

/// File name of the run configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.json";

/// How a problem becomes chat messages; `{question}` in `user` is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTemplate {
    pub system: Option<String>,
    pub user: String,
}

impl Default for PromptTemplate {
    fn default() -> Self {
        PromptTemplate {
            system: None,
            user: "{question}\nPlease reason step by step, and put your final answer within \\boxed{}."
                .into(),
        }
    }
}

impl PromptTemplate {
    pub fn messages(&self, question: &str) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system {
            messages.push(ChatMessage::new("system", system.clone()));
        }
        messages.push(ChatMessage::new(
            "user",
            self.user.replace("{question}", question),
        ));
        messages
    }
}

/// Everything that defines a run, written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Name of the run in reports and comparisons.
    pub label: String,
    pub prompt: PromptTemplate,
    /// The sampler; sample `s` of a problem uses seed `sampling.seed + s`.
    pub sampling: SamplerConfig,
    /// Most tokens decoded per answer.
    pub max_tokens: u32,
    /// How each answer is steered (`none`: plain decoding).
    #[serde(default)]
    pub strategy: StrategySpec,
    /// Samples drawn per problem (≥ 1); more than one enables pass@k and eff@k.
    pub samples_per_problem: u32,
    pub extract: ExtractOptions,
    pub grade: GradeOptions,
    /// Generation cache directory; `None` disables caching.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Continue a run directory that already has records.
    #[serde(skip)]
    pub resume: bool,
    /// Requests in flight at once (≥ 1). Not part of a run's identity: with
    /// batch-invariant backends the answers do not depend on it.
    #[serde(skip)]
    pub concurrency: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            label: "run".into(),
            prompt: PromptTemplate::default(),
            sampling: SamplerConfig::greedy(),
            max_tokens: 1024,
            strategy: StrategySpec::none(),
            samples_per_problem: 1,
            extract: ExtractOptions::default(),
            grade: GradeOptions::default(),
            cache_dir: None,
            resume: false,
            concurrency: 1,
        }
    }
}

/// What is written to `config.json`: the config plus the model identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub model: String,
    #[serde(flatten)]
    pub config: RunConfig,
}

/// Whether to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Bar,
    Hidden,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create run directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "run directory {path} already has {count} records; pass resume to continue it \
         or choose another directory"
    )]
    AlreadyStarted { path: PathBuf, count: usize },
    #[error(
        "cannot resume {path}: its config.json differs from this run ({what}); use a new \
         run directory"
    )]
    ConfigMismatch { path: PathBuf, what: String },
    #[error("cannot read or write {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("the backend failed on problem '{id}' sample {sample}: {source}")]
    Answer {
        id: String,
        sample: u32,
        source: Box<BackendError>,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Runs `problems` through `backend` into `run_dir` and returns the summary of all
/// records in the directory (earlier sessions included).
pub fn run_eval(
    problems: &[Problem],
    backend: &dyn Backend,
    config: &RunConfig,
    run_dir: &Path,
    progress: Progress,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    std::fs::create_dir_all(run_dir).map_err(|source| RunError::CreateDir {
        path: run_dir.to_path_buf(),
        source,
    })?;
    let manifest = RunManifest {
        model: backend.fingerprint(),
        config: config.clone(),
    };
    let (mut writer, existing) = RunWriter::open(run_dir)?;
    if !existing.records.is_empty() && !config.resume {
        return Err(RunError::AlreadyStarted {
            path: run_dir.to_path_buf(),
            count: existing.records.len(),
        });
    }
    check_or_write_manifest(run_dir, &manifest)?;
    let previous_wall_s = if config.resume {
        report::read_summary(run_dir).map_or(0.0, |s| s.wall_s)
    } else {
        0.0
    };

    // An `adaptive` answer depends on the difficulty probe's file as well as on the
    // request, and a retrained probe routes differently: those answers are not cached
    // (`--resume` still keeps them, through the records).
    let cache = config
        .cache_dir
        .as_deref()
        .filter(|_| config.strategy.adaptive().is_none())
        .map(GenerationCache::open)
        .transpose()?;
    let mut records = existing.records;
    let done: HashSet<(String, u32)> = records.iter().map(|r| (r.id.clone(), r.sample)).collect();
    let samples = config.samples_per_problem.max(1);
    let total = problems.len() as u64 * u64::from(samples);
    let bar = progress_bar(progress, total);
    let mut live = LiveStats::default();
    let wanted: HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    for record in &records {
        if wanted.contains(record.id.as_str()) {
            live.add(record);
            bar.inc(1);
        }
    }
    bar.set_message(live.message());

    let jobs: Vec<(&Problem, u32)> = problems
        .iter()
        .flat_map(|p| (0..samples).map(move |s| (p, s)))
        .filter(|(p, s)| !done.contains(&(p.id.clone(), *s)))
        .collect();
    let next_job = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut first_error = None;
    std::thread::scope(|scope| {
        let (finished, results) = mpsc::channel();
        for _ in 0..config.concurrency.clamp(1, jobs.len().max(1)) {
            let finished = finished.clone();
            let (jobs, next_job, stop, cache) = (&jobs, &next_job, &stop, cache.as_ref());
            let model = manifest.model.as_str();
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(&(problem, sample)) =
                        jobs.get(next_job.fetch_add(1, Ordering::Relaxed))
                    else {
                        break;
                    };
                    let record = answer_one(problem, sample, backend, config, model, cache);
                    if record.is_err() {
                        // Stop taking jobs at once, before the writer sees the error.
                        stop.store(true, Ordering::Relaxed);
                    }
                    if finished.send(record).is_err() {
                        break;
                    }
                }
            });
        }
        drop(finished);
        // Results of requests already in flight are still recorded after a failure.
        for result in results {
            let written = result.and_then(|record| {
                writer.append(&record)?;
                Ok(record)
            });
            match written {
                Ok(record) => {
                    live.add(&record);
                    bar.inc(1);
                    bar.set_message(live.message());
                    records.push(record);
                }
                Err(err) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(err);
                }
            }
        }
    });
    if let Some(err) = first_error {
        bar.abandon();
        return Err(err);
    }
    bar.finish();

    let wall_s = previous_wall_s + started.elapsed().as_secs_f64();
    let summary = Summary::from_records(&config.label, &records, wall_s);
    report::write_run_outputs(run_dir, &summary, &records)?;
    Ok(summary)
}

fn answer_one(
    problem: &Problem,
    sample: u32,
    backend: &dyn Backend,
    config: &RunConfig,
    model: &str,
    cache: Option<&GenerationCache>,
) -> Result<Record, RunError> {
    let answer_error = |source| RunError::Answer {
        id: problem.id.clone(),
        sample,
        source: Box::new(source),
    };
    let seed = config.sampling.seed.wrapping_add(u64::from(sample));
    let request = CompletionRequest {
        strategy: config.strategy.clone(),
        ..CompletionRequest::chat(
            config.prompt.messages(&problem.question),
            SamplerConfig {
                seed,
                ..config.sampling.clone()
            },
            config.max_tokens as usize,
        )
    };
    let prompt = backend.render(&request).map_err(answer_error)?;
    let key = cache_key(model, &prompt, &request, sample);
    let cached = cache.and_then(|c| c.get(&key));
    let from_cache = cached.is_some();
    let completion = match cached {
        Some(completion) => completion,
        None => {
            let completion = backend.complete(&request).map_err(answer_error)?;
            if let Some(cache) = cache {
                cache.put(&key, &completion)?;
            }
            completion
        }
    };
    // An answer cut off inside its think section is graded on what it thought.
    let graded_text = match (&completion.reasoning, completion.text.trim().is_empty()) {
        (Some(reasoning), true) => reasoning.as_str(),
        _ => completion.text.as_str(),
    };
    let graded = grade_text(graded_text, &problem.gold, &config.extract, &config.grade);
    Ok(Record {
        id: problem.id.clone(),
        sample,
        prompt,
        output: completion.text,
        reasoning: completion.reasoning,
        correct_strict: graded.correct && graded.rule.is_strict(),
        extracted: graded.extracted,
        rule: graded.rule,
        gold: problem.gold.clone(),
        correct: graded.correct,
        usage: completion.usage,
        stop_reason: completion.stop_reason,
        events: completion.events,
        latency_s: completion.latency_s,
        engine_time: completion.engine_time,
        sampling: request.sampling,
        max_tokens: config.max_tokens,
        strategy: config.strategy.to_string(),
        seed,
        cached: from_cache,
    })
}

fn check_or_write_manifest(run_dir: &Path, manifest: &RunManifest) -> Result<(), RunError> {
    let path = run_dir.join(CONFIG_FILE);
    let config_error = |reason: String| RunError::Config {
        path: path.clone(),
        reason,
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| config_error(e.to_string()))?;
        let stored: RunManifest =
            serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?;
        let what = manifest_difference(&stored, manifest);
        if let Some(what) = what {
            return Err(RunError::ConfigMismatch { path, what });
        }
        return Ok(());
    }
    let json = serde_json::to_string_pretty(manifest).map_err(|e| config_error(e.to_string()))?;
    std::fs::write(&path, json + "\n").map_err(|e| config_error(e.to_string()))
}

/// Names the first setting that changes what a record means, if any. The label and
/// the cache location may change between sessions.
fn manifest_difference(stored: &RunManifest, current: &RunManifest) -> Option<String> {
    let (a, b) = (&stored.config, &current.config);
    if stored.model != current.model {
        Some(format!("model '{}' vs '{}'", stored.model, current.model))
    } else if a.prompt != b.prompt {
        Some("prompt template".into())
    } else if a.sampling != b.sampling || a.max_tokens != b.max_tokens {
        Some("sampling parameters".into())
    } else if a.strategy != b.strategy {
        Some(format!("strategy '{}' vs '{}'", a.strategy, b.strategy))
    } else if a.samples_per_problem != b.samples_per_problem {
        Some("samples per problem".into())
    } else if a.extract != b.extract {
        Some("extraction rules".into())
    } else if a.grade != b.grade {
        Some("grading options".into())
    } else {
        None
    }
}

fn progress_bar(progress: Progress, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        match progress {
            Progress::Bar => ProgressDrawTarget::stderr(),
            Progress::Hidden => ProgressDrawTarget::hidden(),
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Running accuracy and mean tokens for the progress message.
#[derive(Default)]
struct LiveStats {
    n: u64,
    correct: u64,
    output_tokens: u64,
    cost_tokens: u64,
}

impl LiveStats {
    fn add(&mut self, record: &Record) {
        self.n += 1;
        self.correct += u64::from(record.correct);
        self.output_tokens += record.usage.output_tokens;
        self.cost_tokens += record.usage.cost_tokens();
    }

    fn message(&self) -> String {
        if self.n == 0 {
            return String::new();
        }
        let n = self.n as f64;
        let mut message = format!(
            "acc {:.1}% · {:.0} tok/answer",
            100.0 * self.correct as f64 / n,
            self.output_tokens as f64 / n
        );
        if self.cost_tokens != self.output_tokens {
            message.push_str(&format!(" · {:.0} cost", self.cost_tokens as f64 / n));
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_template_fills_question_and_optional_system() {
        let template = PromptTemplate {
            system: Some("Be brief.".into()),
            user: "Q: {question}\nA:".into(),
        };
        let messages = template.messages("2+2?");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].role, "system");
        assert_eq!(messages[1].content, "Q: 2+2?\nA:");
        assert_eq!(PromptTemplate::default().messages("x").len(), 1);
    }

    #[test]
    fn manifest_difference_names_what_changed() {
        let base = RunManifest {
            model: "m".into(),
            config: RunConfig::default(),
        };
        assert_eq!(manifest_difference(&base, &base.clone()), None);
        let mut relabeled = base.clone();
        relabeled.config.label = "other".into();
        assert_eq!(manifest_difference(&base, &relabeled), None);
        let mut hotter = base.clone();
        hotter.config.sampling.temperature = 0.8;
        assert_eq!(
            manifest_difference(&base, &hotter).as_deref(),
            Some("sampling parameters")
        );
        let mut other_model = base.clone();
        other_model.model = "n".into();
        assert!(manifest_difference(&base, &other_model)
            .unwrap()
            .contains("model"));
    }

    #[test]
    fn live_stats_message_shows_accuracy_and_tokens() {
        let mut live = LiveStats::default();
        assert_eq!(live.message(), "");
        live.add(&crate::record::tests::record("a", true, 100));
        live.add(&crate::record::tests::record("b", false, 50));
        assert_eq!(live.message(), "acc 50.0% · 75 tok/answer");
    }
}
