//! `terse train-probe`: fit the difficulty probe (DiffAdapt) on a plain-CoT eval run —
//! the prompt's last hidden state → will plain CoT be right, will it run longer than
//! the median — report its cross-validated AUC and write it beside the model file.

use super::ModelArgs;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use terse_eval::compare::load_run;
use terse_eval::run::{RunManifest, CONFIG_FILE};
use terse_reason::difficulty::{
    auc, cross_validated_scores, probe_path, DifficultyProbe, FitOptions, Logistic, Standardizer,
};
use terse_reason::{Backend, LocalBackend};

#[derive(Args, Debug)]
pub struct TrainProbeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A `terse eval` run of plain chain of thought (`--strategy none`) with this model
    /// on training problems: its records give the outcomes.
    #[arg(long)]
    pub run: PathBuf,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Seed of the fold assignment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// L2 penalty of the logistic models.
    #[arg(long, default_value_t = 1.0)]
    pub l2: f64,
    /// Where to write the probe (default: beside the model file,
    /// `MODEL.difficulty-probe.json`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write each problem's out-of-fold predictions here (JSONL: id, outcome,
    /// `p_right`, `p_long` from the fold that did not see it), to choose `adaptive`'s
    /// thresholds and presets on training problems without the probe's in-sample fit.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

pub fn run(args: TrainProbeArgs) -> Result<()> {
    ensure!(args.folds >= 2, "--folds must be at least 2");
    ensure!(
        args.l2 >= 0.0 && args.l2.is_finite(),
        "--l2 must be a finite number ≥ 0"
    );
    let run = load_run(&args.run).with_context(|| format!("loading run {}", args.run.display()))?;
    let config_path = args.run.join(CONFIG_FILE);
    let manifest: RunManifest = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )
    .with_context(|| format!("parsing {}", config_path.display()))?;
    if !manifest.config.strategy.stages.is_empty() {
        bail!(
            "{} is not a plain chain-of-thought run (strategy {}): train the probe on `terse eval --strategy none`",
            args.run.display(),
            manifest.config.strategy
        );
    }
    let records: Vec<_> = run.records.iter().filter(|r| r.sample == 0).collect();
    ensure!(
        records.len() >= 2 * args.folds,
        "{} has {} problems: too few for {}-fold cross-validation",
        args.run.display(),
        records.len(),
        args.folds
    );

    let engine = args.model.load_with_kv_capacity(0)?;
    let model_file = engine.path().to_path_buf();
    let backend = LocalBackend::new(engine, 8)?;
    let fingerprint = backend.fingerprint();
    if manifest.model != fingerprint {
        bail!(
            "{} was run with model {}, not {} ({fingerprint}): its outcomes are another model's",
            args.run.display(),
            manifest.model,
            model_file.display()
        );
    }

    let start = Instant::now();
    let prompts: Vec<String> = records.iter().map(|r| r.prompt.clone()).collect();
    let hidden = backend.prompt_hidden_states(&prompts)?;
    let hidden_size = hidden.first().map_or(0, Vec::len);
    eprintln!(
        "hidden states of {} prompts ({hidden_size} values each) in {:.1} s",
        hidden.len(),
        start.elapsed().as_secs_f64()
    );

    let right: Vec<bool> = records.iter().map(|r| r.correct).collect();
    let mut tokens: Vec<f64> = records
        .iter()
        .map(|r| r.usage.output_tokens as f64)
        .collect();
    let lengths = tokens.clone();
    tokens.sort_by(f64::total_cmp);
    let median_tokens = tokens[tokens.len() / 2];
    let long: Vec<bool> = lengths.iter().map(|&t| t > median_tokens).collect();

    let options = FitOptions {
        l2: args.l2,
        ..FitOptions::default()
    };
    let cv_right = cross_validated_scores(&hidden, &right, args.folds, args.seed, &options);
    let cv_long = cross_validated_scores(&hidden, &long, args.folds, args.seed, &options);
    let cv_auc_correct = auc(&cv_right, &right);
    let cv_auc_long = auc(&cv_long, &long);
    if let Some(path) = &args.predictions {
        let mut lines = String::new();
        for (i, record) in records.iter().enumerate() {
            let line = serde_json::json!({
                "id": record.id,
                "correct": record.correct,
                "output_tokens": record.usage.output_tokens,
                "p_right": cv_right[i],
                "p_long": cv_long[i],
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }

    let rows: Vec<&[f32]> = hidden.iter().map(Vec::as_slice).collect();
    let standardizer = Standardizer::fit(&rows);
    let z: Vec<Vec<f64>> = hidden.iter().map(|h| standardizer.apply(h)).collect();
    let probe = DifficultyProbe {
        model_fingerprint: fingerprint,
        hidden_size,
        correct: Logistic::fit(&z, &right, &options),
        long: Logistic::fit(&z, &long, &options),
        standardizer,
        median_tokens,
        trained_on: records.len(),
        folds: args.folds,
        cv_auc_correct,
        cv_auc_long,
        source_run: args.run.display().to_string(),
    };
    let out = args.out.unwrap_or_else(|| probe_path(&model_file));
    std::fs::write(&out, serde_json::to_string_pretty(&probe)?)
        .with_context(|| format!("writing {}", out.display()))?;

    let show = |a: Option<f64>| a.map_or("– (one class only)".into(), |a| format!("{a:.3}"));
    let rate = right.iter().filter(|&&r| r).count() as f64 / right.len() as f64;
    println!("| label | positives | {}-fold CV AUC |", args.folds);
    println!("|---|---:|---:|");
    println!(
        "| plain CoT right | {:.0}% | {} |",
        100.0 * rate,
        show(cv_auc_correct)
    );
    println!(
        "| longer than the median ({median_tokens:.0} tokens) | {:.0}% | {} |",
        100.0 * long.iter().filter(|&&l| l).count() as f64 / long.len() as f64,
        show(cv_auc_long)
    );
    eprintln!("wrote {}", out.display());
    Ok(())
}
