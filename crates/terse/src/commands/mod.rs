//! One module per subcommand, plus the options they share.

pub mod bench;
pub mod chat;
pub mod compare;
pub mod eval;
pub mod generate;
pub mod grade;
pub mod info;
pub mod models;
pub mod oracle;
pub mod serve;
pub mod train_probe;

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use terse_engine::{Engine, EngineOptions, SamplerConfig};
use terse_reason::StrategySpec;
use terse_store::{ModelStore, StoreError};

/// Which model to run and how.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model alias (see `terse models list`), a path to a .gguf file, or a Hugging Face
    /// id `org/repo/file.gguf`.
    #[arg(short, long, default_value = terse_store::DEFAULT_MODEL)]
    pub model: String,
    /// Worker threads (0 = all cores).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Context size in tokens: the longest sequence and the KV cache capacity
    /// (0 = min(4096, the model's trained context)).
    #[arg(short = 'c', long, default_value_t = 0)]
    pub ctx_size: usize,
}

impl ModelArgs {
    /// A short name of the model for labels: the alias, or a file's stem.
    pub fn short_name(&self) -> String {
        let path = std::path::Path::new(&self.model);
        if self.model.ends_with(".gguf") {
            if let Some(stem) = path.file_stem() {
                return stem.to_string_lossy().into_owned();
            }
        }
        self.model.replace('/', "_")
    }

    /// The model file; a known alias that is not in the cache yet is pulled first, so
    /// the first run on a fresh machine works.
    pub fn resolve(&self) -> Result<PathBuf> {
        let store = ModelStore::from_env().context("opening the model cache")?;
        match store.resolve(&self.model) {
            Err(StoreError::NotPulled { alias, .. }) => {
                eprintln!("model {alias} is not in the cache yet: pulling it");
                Ok(store
                    .pull(&alias, true)
                    .with_context(|| format!("pulling {alias}"))?)
            }
            other => Ok(other?),
        }
    }

    pub fn load(&self) -> Result<Engine> {
        self.load_with_kv_capacity(0)
    }

    /// Loads the model with a KV cache of at least `kv_capacity_tokens` positions
    /// shared by all sequences (at least the context size).
    pub fn load_with_kv_capacity(&self, kv_capacity_tokens: usize) -> Result<Engine> {
        let path = self.resolve()?;
        let engine = Engine::load(
            &path,
            &EngineOptions {
                threads: self.threads,
                ctx_size: self.ctx_size,
                kv_capacity_tokens,
            },
        )?;
        Ok(engine)
    }
}

/// The sampler chain's knobs (llama.cpp's defaults).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling mass (1.0 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Minimum probability relative to the most likely token (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Top-H entropy scale α in (0, 1] (off unless given).
    #[arg(long)]
    pub top_h: Option<f32>,
    /// Repetition penalty (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Presence penalty (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Tokens the penalties look back over.
    #[arg(long, default_value_t = 64)]
    pub penalty_last_n: usize,
    /// Random seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn config(&self) -> Result<SamplerConfig> {
        if let Some(alpha) = self.top_h {
            anyhow::ensure!(
                alpha > 0.0 && alpha <= 1.0,
                "--top-h must be in (0, 1], got {alpha}"
            );
        }
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.top_p),
            "--top-p must be in [0, 1], got {}",
            self.top_p
        );
        anyhow::ensure!(
            self.temperature >= 0.0,
            "--temperature must be ≥ 0, got {}",
            self.temperature
        );
        Ok(SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            top_h: self.top_h,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.penalty_last_n,
            logit_bias: Vec::new(),
            seed: self.seed,
        })
    }
}

/// How answers are steered: a strategy chain, its options and an optional file.
#[derive(Args, Debug, Clone, Default)]
pub struct StrategyArgs {
    /// Strategy chain, stages joined by `+` (for example `loop-guard+early-exit`):
    /// none, be-brief, chain-of-draft, concise-exemplars, budget, budget-forcing,
    /// early-exit, probe-trace, stop-boost, concise-hint, loop-guard, verify,
    /// consistency, adaptive, program, refine.
    #[arg(long)]
    pub strategy: Option<String>,
    /// A strategy option, `KEY=VALUE` or `STAGE.KEY=VALUE` (repeatable), for example
    /// `every=16` or `format=think`.
    #[arg(long = "strategy-opt", value_name = "KEY=VALUE")]
    pub strategy_opts: Vec<String>,
    /// A TOML file with `strategy = "…"` and a table of options per stage;
    /// --strategy and --strategy-opt override it.
    #[arg(long, value_name = "FILE")]
    pub strategy_config: Option<PathBuf>,
}

impl StrategyArgs {
    pub fn spec(&self) -> Result<StrategySpec> {
        match &self.strategy_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --strategy-config {}", path.display()))?;
                StrategySpec::from_toml(&text, self.strategy.as_deref(), &self.strategy_opts)
                    .with_context(|| format!("--strategy-config {}", path.display()))
            }
            None => Ok(StrategySpec::parse(
                self.strategy.as_deref().unwrap_or("none"),
                &self.strategy_opts,
            )?),
        }
    }
}
