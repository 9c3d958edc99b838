//! `terse serve`: the OpenAI-compatible server on the local engine, or in front of
//! another OpenAI-compatible server (`--upstream`). Parses the flags and hands them to
//! `terse-server`.

use super::{ModelArgs, SamplingArgs, StrategyArgs};
use anyhow::{Context, Result};
use clap::Args;
use std::io::IsTerminal;
use terse_reason::LocalBackend;
use terse_server::strategy::{Presets, ServerSettings};
use terse_server::{Defaults, Model, ServerConfig, Upstream};

/// `generate`'s model flags, unset unless given, so `[server]` in `--config` can set
/// them.
#[derive(Args, Debug)]
pub struct ServeModelArgs {
    /// Model alias (see `terse models list`), a path to a .gguf file, or a Hugging Face
    /// id `org/repo/file.gguf` [default: the default model].
    #[arg(short, long)]
    pub model: Option<String>,
    /// Worker threads (0 = all cores) [default: 0].
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Context size of each sequence in tokens (0 = min(4096, the model's trained
    /// context)) [default: 0].
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ServeModelArgs,
    /// Defaults for the sampling fields a request leaves out (`-n` is the default
    /// `max_tokens`).
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The strategy of requests that name none (they choose theirs with the `terse`
    /// object, a `MODEL+strategy` name or `reasoning_effort`).
    #[command(flatten)]
    pub strategy: StrategyArgs,
    /// Sequences decoded together in the engine's batch (in proxy mode: requests sent
    /// upstream at once) [default: 8].
    #[arg(long)]
    pub max_sequences: Option<usize>,
    /// Sequences that may wait for the batch; beyond that requests get a 429
    /// [default: 256].
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on (0 = any free port) [default: 8080].
    #[arg(long)]
    pub port: Option<u16>,
    /// Require `Authorization: Bearer KEY` on /v1/* (default: $TERSE_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// A TOML file: a `[server]` table of these flags (model, threads, ctx_size, host,
    /// port, max_sequences, max_queue, served_model_name, upstream, upstream_model,
    /// strategy; a flag given wins), strategy presets as `[preset.NAME]` tables in
    /// --strategy-config's format (requests use them as `MODEL+NAME` or `"terse":
    /// {"strategy": NAME}`) and an `[effort]` table mapping reasoning_effort levels to a
    /// preset or a chain; `[models.NAME]` tables hold a model's own presets, effort
    /// levels and default `strategy`, used when NAME is the served model.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The model name clients send (default: the upstream model, else the alias or the
    /// file's stem).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Proxy this OpenAI-compatible server (`http://HOST:PORT[/v1]` or `https://…`:
    /// llama.cpp's server, vLLM, SGLang, a hosted API) instead of running a local model.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// The model name to send upstream (default: the served model name).
    #[arg(long)]
    pub upstream_model: Option<String>,
    /// The upstream's Bearer key.
    #[arg(long)]
    pub api_key_upstream: Option<String>,
}

pub fn run(mut args: ServeArgs) -> Result<()> {
    // Logs to stderr, `RUST_LOG` to change what (default: info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let sampling = args.sampling.config()?;
    let (settings, presets) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --config {}", path.display()))?;
            let context = || format!("--config {}", path.display());
            (
                ServerSettings::from_toml(&text).with_context(context)?,
                Presets::from_toml(&text).with_context(context)?,
            )
        }
        None => (ServerSettings::default(), Presets::default()),
    };
    let model_args = ModelArgs {
        model: args
            .model
            .model
            .take()
            .or(settings.model)
            .unwrap_or_else(|| terse_store::DEFAULT_MODEL.into()),
        threads: args.model.threads.or(settings.threads).unwrap_or(0),
        ctx_size: args.model.ctx_size.or(settings.ctx_size).unwrap_or(0),
    };
    let max_sequences = args.max_sequences.or(settings.max_sequences).unwrap_or(8);
    anyhow::ensure!(max_sequences >= 1, "--max-sequences must be at least 1");
    args.served_model_name = args.served_model_name.or(settings.served_model_name);
    args.upstream = args.upstream.or(settings.upstream);
    args.upstream_model = args.upstream_model.or(settings.upstream_model);
    anyhow::ensure!(
        args.upstream.is_some() || (args.upstream_model.is_none() && args.api_key_upstream.is_none()),
        "--upstream-model and --api-key-upstream need --upstream (or [server] upstream in --config)"
    );
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("TERSE_API_KEY").ok());
    let model_name = args
        .served_model_name
        .clone()
        .or_else(|| args.upstream_model.clone())
        .unwrap_or_else(|| model_args.short_name());
    let upstream_model = args
        .upstream_model
        .clone()
        .unwrap_or_else(|| model_name.clone());
    let mut names = vec![model_args.model.as_str(), model_name.as_str()];
    if args.upstream.is_some() {
        names.push(upstream_model.as_str());
    }
    let (model_presets, model_strategy) = presets.for_model(&names);
    for unused in presets.models().filter(|m| !names.contains(m)) {
        tracing::info!("--config: [models.\"{unused}\"] is not the served model; not used");
    }
    let presets = model_presets;
    // --strategy, then the served model's table, then [server].
    let strategy = match (
        &args.strategy.strategy,
        &args.strategy.strategy_config,
        model_strategy,
    ) {
        (None, None, Some(chain)) => presets
            .spec(&chain, &args.strategy.strategy_opts)
            .with_context(|| format!("--config: the served model's strategy = \"{chain}\""))?,
        _ => {
            args.strategy.strategy = args.strategy.strategy.take().or(settings.strategy);
            args.strategy.spec()?
        }
    };
    let config = ServerConfig {
        host: args
            .host
            .or(settings.host)
            .unwrap_or_else(|| "127.0.0.1".into()),
        port: args.port.or(settings.port).unwrap_or(8080),
        model_name: model_name.clone(),
        api_key,
        max_sequences,
        max_queue: args.max_queue.or(settings.max_queue).unwrap_or(256),
        defaults: Defaults {
            sampling,
            max_tokens: args.sampling.max_tokens,
            strategy,
            presets,
        },
    };
    let loader: terse_server::Loader = match args.upstream {
        Some(base_url) => {
            let upstream = Upstream {
                base_url,
                model: upstream_model,
                api_key: args.api_key_upstream,
            };
            Box::new(move || Ok(Model::Proxy(upstream)))
        }
        None => {
            let model = model_args;
            Box::new(move || {
                // Every sequence of the batch may reach the full context.
                let ctx = if model.ctx_size == 0 {
                    4096
                } else {
                    model.ctx_size
                };
                let engine = model
                    .load_with_kv_capacity(max_sequences * ctx)
                    .map_err(|e| format!("{e:#}"))?;
                LocalBackend::new(engine, max_sequences)
                    .map(|b| Model::Local(Box::new(b)))
                    .map_err(|e| e.to_string())
            })
        }
    };
    Ok(terse_server::serve(config, loader)?)
}
