//! `terse generate`: continue a raw prompt, or answer one chat message, streaming the
//! text to stdout and statistics to stderr.

use super::{ModelArgs, SamplingArgs, StrategyArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use terse_engine::{ChatMessage, Engine, Sampler, SamplerConfig, StopReason, StreamDecoder};
use terse_reason::{
    Backend, CompletionRequest, Grammar, LocalBackend, PieceKind, Prompt, StrategySpec,
};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    /// Raw text to continue (BOS per the model's flags, no chat template).
    #[arg(short, long, conflicts_with_all = ["chat", "prompt_file"])]
    pub prompt: Option<String>,
    /// Read the raw prompt from a file (must be UTF-8).
    #[arg(short = 'f', long, conflicts_with = "chat")]
    pub prompt_file: Option<PathBuf>,
    /// One user message sent through the model's chat template.
    #[arg(long)]
    pub chat: Option<String>,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// With --chat on a model without a template: send the text as a plain prompt
    /// instead of wrapping it in ChatML.
    #[arg(long, requires = "chat")]
    pub no_chat: bool,
    /// Treat special-token text such as <|im_start|> in --prompt as plain text.
    #[arg(long)]
    pub no_special: bool,
    /// Constrain the answer to one JSON object (what the server's `response_format`
    /// `json_object` does); with a think section, the answer after it.
    #[arg(long, conflicts_with = "json_schema")]
    pub json: bool,
    /// Constrain the answer to an instance of the JSON schema in FILE (what the
    /// server's `response_format` `json_schema` does).
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<std::path::PathBuf>,
}

/// The grammar `--json` or `--json-schema` asks for.
fn constraint(args: &GenerateArgs) -> Result<Option<Grammar>> {
    let Some(path) = &args.json_schema else {
        return Ok(args.json.then(Grammar::json_object));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let grammar = Grammar::from_json_schema(&schema)
        .with_context(|| format!("{}: a schema terse cannot enforce", path.display()))?;
    Ok(Some(grammar))
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let sampler_config = args.sampling.config()?;
    let strategy = args.strategy.spec()?;
    let raw_prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: invalid UTF-8 at byte {}",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            Some(text)
        }
        (None, None) => None,
    };
    if raw_prompt.is_none() && args.chat.is_none() {
        bail!("give --prompt TEXT, --prompt-file PATH or --chat TEXT");
    }

    let constraint = constraint(&args)?;
    let mut engine = args.model.load()?;
    if !strategy.stages.is_empty() || constraint.is_some() {
        return run_steered(
            engine,
            &args,
            raw_prompt,
            sampler_config,
            strategy,
            constraint,
        );
    }
    let prompt_tokens = match (&raw_prompt, &args.chat) {
        (Some(text), _) => engine.tokenizer().encode(text, true, !args.no_special),
        (None, Some(message)) => {
            chat_prompt(&engine, args.system.as_deref(), message, args.no_chat)?
        }
        (None, None) => unreachable!("checked above"),
    };

    let mut sampler = Sampler::new(sampler_config);
    let tokenizer = engine.tokenizer().clone();
    let mut decoder = StreamDecoder::new();
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let (_, reason, stats) = engine.generate(
        &prompt_tokens,
        &mut sampler,
        args.sampling.max_tokens,
        |t| {
            let text = decoder.push(&tokenizer, t.id);
            match stdout
                .write_all(text.as_bytes())
                .and_then(|_| stdout.flush())
            {
                Ok(()) => true,
                Err(e) => {
                    write_error = Some(e);
                    false
                }
            }
        },
    )?;
    if let Some(e) = write_error {
        // A closed pipe (e.g. `| head`) ends generation quietly.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
        return Ok(());
    }
    let rest = decoder.flush();
    let _ = stdout.write_all(rest.as_bytes());
    let _ = writeln!(stdout);
    let _ = stdout.flush();
    eprintln!(
        "[{} prompt tokens, {:.1} tok/s prefill | {} generated, {:.1} tok/s decode | stop: {} | {} threads]",
        stats.prompt_tokens,
        stats.prefill_tokens_per_s(),
        stats.generated_tokens,
        stats.decode_tokens_per_s(),
        match reason {
            StopReason::EndOfGeneration => "end of generation",
            StopReason::MaxTokens => "max tokens",
            StopReason::Caller | StopReason::Steered => "stopped",
        },
        engine.threads(),
    );
    Ok(())
}

/// Tokens of one user message (with an optional system message) through the template.
fn chat_prompt(
    engine: &Engine,
    system: Option<&str>,
    message: &str,
    no_chat: bool,
) -> Result<Vec<u32>> {
    if engine.chat_template().is_none() {
        if no_chat {
            return Ok(engine.tokenizer().encode(message, true, false));
        }
        eprintln!("warning: the model has no chat template; using ChatML (pass --no-chat for a plain prompt)");
    }
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", message));
    let text = engine.render_chat(&messages, true)?;
    // The rendered template carries its own special tokens (and BOS where it wants one).
    Ok(engine.tokenizer().encode(&text, false, true))
}

/// `generate --strategy`: the request goes through the reasoning controllers on the
/// local engine; the answer streams to stdout, usage and the stop reason to stderr.
fn run_steered(
    engine: Engine,
    args: &GenerateArgs,
    raw_prompt: Option<String>,
    sampling: SamplerConfig,
    strategy: StrategySpec,
    constraint: Option<Grammar>,
) -> Result<()> {
    if args.no_special {
        bail!("--no-special does not apply with --strategy (strategies inject special-token text such as </think>)");
    }
    let prompt = match (raw_prompt, &args.chat) {
        (Some(text), _) => Prompt::Text(text),
        (None, Some(message)) => {
            if engine.chat_template().is_none() {
                eprintln!("warning: the model has no chat template; using ChatML");
            }
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system.clone()));
            }
            messages.push(ChatMessage::new("user", message.clone()));
            Prompt::Chat(messages)
        }
        (None, None) => bail!("give --prompt TEXT, --prompt-file PATH or --chat TEXT"),
    };
    // Self-consistency draws its traces as siblings: one sequence each per round.
    let sequences = strategy.sequences_in_flight();
    let kv_tokens = (engine.ctx_size() + 1024) * sequences;
    drop(engine);
    let backend = LocalBackend::new(args.model.load_with_kv_capacity(kv_tokens)?, sequences)?;
    let request = CompletionRequest {
        prompt,
        sampling,
        max_tokens: args.sampling.max_tokens,
        stop: Vec::new(),
        strategy: strategy.clone(),
        logprobs: false,
        top_logprobs: 0,
        template_kwargs: serde_json::Map::new(),
        constraint,
    };
    let mut stdout = std::io::stdout();
    let mut last_kind = None;
    let mut print = |kind, text: &str, _: &[terse_reason::TokenLogprob]| {
        if last_kind == Some(PieceKind::Reasoning) && kind == PieceKind::Content {
            let _ = write!(stdout, "\n--- answer ---\n");
        }
        last_kind = Some(kind);
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    };
    // Streams as decoded; self-consistency's answer comes once its traces have voted.
    let completion = backend.complete_with(&request, &mut print)?;
    let _ = writeln!(stdout);
    let u = completion.usage;
    eprintln!(
        "[strategy {strategy} | stop: {} | {} prompt tokens ({} cached) | {} output ({} reasoning, {} answer) + {} probe ({} probes) + {} injected = {} cost tokens | {:.1} s]",
        completion.stop_reason,
        u.prompt_tokens,
        u.prompt_cached_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.answer_tokens,
        u.probe_tokens(),
        u.probes,
        u.injected_tokens,
        u.cost_tokens(),
        completion.latency_s,
    );
    for event in &completion.events {
        eprintln!(
            "  {} {} at token {}{}",
            event.strategy,
            event.kind,
            event.at_token,
            event
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
