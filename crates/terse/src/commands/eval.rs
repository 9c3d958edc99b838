//! `terse eval`: accuracy against token cost on a dataset, on the local engine or an
//! OpenAI-compatible server, recorded so that nothing computed is ever lost.

use super::{ModelArgs, SamplingArgs, StrategyArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use terse_eval::dataset::{load_source, select, Fields, Source};
use terse_eval::run::{Progress, PromptTemplate};
use terse_eval::{run_eval, ExtractOptions, RunConfig};
use terse_reason::{LocalBackend, OpenAiBackend};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// terse's own engine.
    Local,
    /// An OpenAI-compatible server (`--base-url`).
    Openai,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PromptStyle {
    /// "Please reason step by step, and put your final answer within \boxed{}."
    Step,
    /// Asks for a brief answer with minimal reasoning.
    Brief,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    /// Problems: `gsm8k:PATH`, a JSONL path (see --question-field/--answer-field),
    /// `synthetic:dN:nCOUNT:sSEED`, or `hf:OWNER/NAME[:CONFIG[:SPLIT]]`.
    #[arg(long)]
    pub dataset: String,
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// Base URL of the OpenAI-compatible server (with --backend openai).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Built-in prompt style.
    #[arg(long, value_enum, default_value_t = PromptStyle::Step)]
    pub prompt_style: PromptStyle,
    /// Custom user prompt; `{question}` is replaced by the problem (overrides --prompt-style).
    #[arg(long)]
    pub prompt_template: Option<String>,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    /// Skip this many problems (after --sample).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Use at most this many problems.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Draw N problems at random (seeded by --sample-seed) before offset/limit.
    #[arg(long)]
    pub sample: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// Samples per problem (more than one reports pass@k and eff@k).
    #[arg(long, default_value_t = 1)]
    pub samples: u32,
    /// Answer extraction rules in order (default: hashes, boxed, answer_is, final_answer, last_number).
    #[arg(long)]
    pub rules: Option<String>,
    /// Field holding the question in a generic JSONL dataset.
    #[arg(long, default_value = "question")]
    pub question_field: String,
    /// Field holding the gold answer in a generic JSONL dataset.
    #[arg(long, default_value = "answer")]
    pub answer_field: String,
    /// Field holding a stable id in a generic JSONL dataset (default: hash of the question).
    #[arg(long)]
    pub id_field: Option<String>,
    /// Stop at the first bad dataset line instead of reporting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Run directory (default: runs/<label>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Name of the run in reports (default: <model>-<prompt style>).
    #[arg(long)]
    pub label: Option<String>,
    /// Continue a run directory, recomputing nothing already recorded.
    #[arg(long)]
    pub resume: bool,
    /// Do not use the generation cache ($TERSE_HOME/generations).
    #[arg(long)]
    pub no_cache: bool,
    /// Requests in flight at once. The local engine packs them into shared forward
    /// passes (same answers as one at a time, more tokens per second); a remote server
    /// receives them as parallel HTTP requests.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let sampling = args.sampling.config()?;
    let strategy = args.strategy.spec()?;
    let source =
        Source::parse(&args.dataset).with_context(|| format!("--dataset {}", args.dataset))?;
    let fields = Fields {
        question: args.question_field.clone(),
        answer: args.answer_field.clone(),
        id: args.id_field.clone(),
    };
    let store = terse_store::ModelStore::from_env().context("opening the model cache")?;
    let (problems, issues) = load_source(
        &source,
        &fields,
        args.strict,
        &store.root().join("datasets"),
    )
    .with_context(|| format!("loading {}", args.dataset))?;
    for issue in &issues {
        eprintln!(
            "warning: {}: line {} skipped: {}",
            args.dataset, issue.line, issue.reason
        );
    }
    let problems = select(
        problems,
        args.offset,
        args.limit,
        args.sample.map(|n| (n, args.sample_seed)),
    );
    if problems.is_empty() {
        bail!("no problems selected from {}", args.dataset);
    }

    let (user, style) = match (&args.prompt_template, args.prompt_style) {
        (Some(t), _) => {
            if !t.contains("{question}") {
                bail!("--prompt-template must contain {{question}}");
            }
            (t.clone(), "custom")
        }
        (None, PromptStyle::Step) => (PromptTemplate::default().user, "step"),
        (None, PromptStyle::Brief) => (
            "{question}\nBe brief: give the answer with as little reasoning as possible, \
             and put the final answer within \\boxed{}."
                .to_string(),
            "brief",
        ),
    };
    let label = args.label.clone().unwrap_or_else(|| {
        let mut label = format!("{}-{style}", args.model.short_name());
        if !strategy.stages.is_empty() {
            label.push_str(&format!("-{strategy}"));
        }
        label
    });
    let config = RunConfig {
        label: label.clone(),
        prompt: PromptTemplate {
            system: args.system.clone(),
            user,
        },
        sampling,
        max_tokens: u32::try_from(args.sampling.max_tokens).context("--max-tokens is too large")?,
        strategy: strategy.clone(),
        samples_per_problem: args.samples.max(1),
        extract: match &args.rules {
            Some(list) => ExtractOptions::parse_list(list).context("--rules")?,
            None => ExtractOptions::default(),
        },
        grade: Default::default(),
        cache_dir: (!args.no_cache).then(|| store.root().join("generations")),
        resume: args.resume,
        concurrency: args.concurrency.into(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&label));
    eprintln!(
        "{} problems from {} → {} (strategy {strategy})",
        problems.len(),
        args.dataset,
        out.display()
    );

    let summary = match args.backend {
        BackendKind::Local => {
            // Room in the KV cache for every request in flight: its prompt (a margin of
            // 1024 tokens), its longest answer, and what its strategy may inject or
            // probe (a margin of 512). Self-consistency runs each round's traces as
            // siblings: that many sequences per problem in flight.
            let traces = strategy.sequences_in_flight();
            let sequences = usize::from(args.concurrency) * traces;
            let kv_tokens = sequences * (args.sampling.max_tokens + 1024 + 512);
            let backend =
                LocalBackend::new(args.model.load_with_kv_capacity(kv_tokens)?, sequences)?;
            run_eval(&problems, &backend, &config, &out, Progress::Bar)?
        }
        BackendKind::Openai => {
            let Some(base_url) = &args.base_url else {
                bail!("--backend openai needs --base-url");
            };
            let backend = OpenAiBackend::new(
                base_url,
                &args.model.model,
                std::env::var("OPENAI_API_KEY").ok(),
            );
            let needs_logits: Vec<&str> = strategy
                .needs()
                .into_iter()
                .filter(|(_, n)| n.logits)
                .map(|(name, _)| name)
                .collect();
            if let Some(stage) = needs_logits.first() {
                bail!("strategy '{stage}' needs the logits before sampling, which the openai backend cannot give (use --backend local)");
            }
            run_eval(&problems, &backend, &config, &out, Progress::Bar)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
