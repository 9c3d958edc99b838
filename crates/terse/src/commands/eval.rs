//! `terse eval`: accuracy against token cost on a dataset, on the local engine or an
//! OpenAI-compatible server, recorded so that nothing computed is ever lost.

use super::{ModelArgs, SamplingArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use terse_eval::dataset::{load_source, select, Fields, Source};
use terse_eval::run::{AnswerError, AnswerRequest, Message, Progress, PromptTemplate};
use terse_eval::{run_eval, Answerer, ExtractOptions, Generation, RunConfig, SamplingParams};
use terse_reason::{Backend, ChatMessage, LocalBackend, OpenAiBackend, Sampling};

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

/// Adapts a reasoning backend to the eval runner.
struct BackendAnswerer<B: Backend> {
    backend: B,
}

fn chat_messages(messages: &[Message]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.clone(),
            content: m.content.clone(),
        })
        .collect()
}

impl<B: Backend> Answerer for BackendAnswerer<B> {
    fn model_fingerprint(&self) -> String {
        self.backend.fingerprint()
    }

    fn render(&self, messages: &[Message]) -> Result<String, AnswerError> {
        Ok(self.backend.render(&chat_messages(messages))?)
    }

    fn answer(&self, request: &AnswerRequest<'_>) -> Result<Generation, AnswerError> {
        let p = request.params;
        let sampling = Sampling {
            max_tokens: p.max_tokens as usize,
            temperature: p.temperature as f32,
            top_k: p.top_k as usize,
            top_p: p.top_p as f32,
            min_p: p.min_p as f32,
            seed: request.seed,
        };
        let c = self
            .backend
            .complete(&chat_messages(request.messages), &sampling)?;
        Ok(Generation {
            text: c.text,
            prompt_tokens: c.prompt_tokens,
            output_tokens: c.output_tokens,
            latency_s: c.latency.as_secs_f64(),
        })
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
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
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{}-{style}", args.model.model.replace('/', "_")));
    let config = RunConfig {
        label: label.clone(),
        prompt: PromptTemplate {
            system: args.system.clone(),
            user,
        },
        params: SamplingParams {
            temperature: f64::from(args.sampling.temperature),
            top_p: f64::from(args.sampling.top_p),
            top_k: args.sampling.top_k as u32,
            min_p: f64::from(args.sampling.min_p),
            max_tokens: args.sampling.max_tokens as u32,
            seed: args.sampling.seed,
            extra: Default::default(),
        },
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
        "{} problems from {} → {}",
        problems.len(),
        args.dataset,
        out.display()
    );

    let summary = match args.backend {
        BackendKind::Local => {
            let answerer = BackendAnswerer {
                backend: {
                    // Room in the KV cache for every request in flight: its prompt (a
                    // margin of 1024 tokens) and its longest answer.
                    let concurrency = usize::from(args.concurrency);
                    let kv_tokens = concurrency * (args.sampling.max_tokens + 1024);
                    LocalBackend::new(args.model.load_with_kv_capacity(kv_tokens)?, concurrency)?
                },
            };
            run_eval(&problems, &answerer, &config, &out, Progress::Bar)?
        }
        BackendKind::Openai => {
            let Some(base_url) = &args.base_url else {
                bail!("--backend openai needs --base-url");
            };
            let answerer = BackendAnswerer {
                backend: OpenAiBackend::new(
                    base_url,
                    &args.model.model,
                    std::env::var("OPENAI_API_KEY").ok(),
                ),
            };
            run_eval(&problems, &answerer, &config, &out, Progress::Bar)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
