//! `terse oracle`: read a `probe-trace` run — where its answers settle, the oracle
//! bound of early exit, and a grid of early-exit stop rules simulated on its traces —
//! or a `fixed` `consistency` run — a grid of adaptive stopping rules replayed on its
//! traces.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use terse_eval::compare::load_run;
use terse_eval::probes::{oracle, simulate, StopRule};
use terse_eval::record::Record;
use terse_eval::votes::{replay_votes, trace_votes};
use terse_eval::GradeOptions;
use terse_reason::consistency::ConsistencyOptions;
use terse_reason::StrategySpec;

#[derive(Args, Debug)]
pub struct OracleArgs {
    /// A run directory of `terse eval --strategy probe-trace`, or of `--strategy
    /// consistency --strategy-opt rule=fixed`.
    pub run: PathBuf,
    /// Probe spacings to simulate (multiples of the run's).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    pub every: Vec<u64>,
    /// Agreeing probes (early exit) or last traces (consistency `window`) needed.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub window: Vec<usize>,
    /// Consistency `beta` thresholds to replay.
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.9,0.95")]
    pub threshold: Vec<f64>,
    /// Least mean log-probability of the deciding probe's answer (`none` = no rule).
    #[arg(long, value_delimiter = ',', default_value = "none,-0.02,-0.1,-0.3")]
    pub min_logprob: Vec<String>,
}

pub fn run(args: OracleArgs) -> Result<()> {
    let run = load_run(&args.run).with_context(|| format!("loading run {}", args.run.display()))?;
    if run.records.iter().any(|r| !trace_votes(r).is_empty()) {
        return consistency_rules(&run.label, &run.records, &args);
    }
    if !run
        .records
        .iter()
        .any(|r| r.events.iter().any(|e| e.kind == "probe"))
    {
        bail!(
            "{} has neither probe nor trace events: run it with --strategy probe-trace, \
             or --strategy consistency --strategy-opt rule=fixed",
            args.run.display()
        );
    }
    let options = GradeOptions::default();
    let o = oracle(&run.records, &options);
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.0}%", 100.0 * v));
    println!("# Oracle bound: {}\n", run.label);
    println!("| answers | right | mean output tokens | oracle mean cost | oracle / plain | right answers settle at | first right at |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.1} | {:.1} | {:.3} | {} of the trace | {} |\n",
        o.records,
        o.correct,
        o.output_tokens_mean,
        o.oracle_cost_mean,
        o.oracle_cost_mean / o.output_tokens_mean.max(1e-9),
        pct(o.settled_fraction_mean),
        pct(o.first_right_fraction_mean)
    );
    println!("## Early-exit stop rules simulated on these traces\n");
    println!("| every | window | min logprob | right | lost / gained | exits | mean cost (output + probes) | cost / plain |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &every in &args.every {
        for &window in &args.window {
            for threshold in &args.min_logprob {
                let min_logprob = match threshold.as_str() {
                    "none" => None,
                    t => Some(
                        t.parse::<f32>()
                            .with_context(|| format!("--min-logprob {t}"))?,
                    ),
                };
                let s = simulate(
                    &run.records,
                    StopRule {
                        every,
                        window,
                        min_logprob,
                    },
                    &options,
                );
                println!(
                    "| {every} | {window} | {threshold} | {} | {} / {} | {} | {:.1} | {:.3} |",
                    s.correct,
                    s.lost,
                    s.gained,
                    s.exits,
                    s.cost_mean,
                    s.cost_mean / o.output_tokens_mean.max(1e-9)
                );
            }
        }
    }
    Ok(())
}

/// Adaptive stopping rules replayed on a `fixed` consistency run's traces.
fn consistency_rules(label: &str, records: &[Record], args: &OracleArgs) -> Result<()> {
    let max_samples = records
        .iter()
        .map(|r| trace_votes(r).len())
        .min()
        .unwrap_or(0);
    // Every rule goes through the strategy's own option parser, so a replayed rule is
    // one `--strategy consistency` would accept (and a bad value is the same error).
    let rule = |name: String, options: &[String]| -> Result<(String, ConsistencyOptions)> {
        let mut all = vec![format!("max_samples={max_samples}")];
        all.extend_from_slice(options);
        let spec = StrategySpec::parse("consistency", &all)
            .with_context(|| format!("replaying {name} on {max_samples} traces"))?;
        let options = spec
            .consistency()
            .cloned()
            .context("a consistency chain has a consistency stage")?;
        Ok((name, options))
    };
    let mut rules = vec![rule("fixed".into(), &["rule=fixed".into()])?];
    for &threshold in &args.threshold {
        rules.push(rule(
            format!("beta {threshold}"),
            &["rule=beta".into(), format!("threshold={threshold}")],
        )?);
    }
    for &window in &args.window {
        rules.push(rule(
            format!("window {window}"),
            &["rule=window".into(), format!("window={window}")],
        )?);
    }

    let options = GradeOptions::default();
    let recorded = records.iter().filter(|r| r.correct).count();
    println!("# Stopping rules replayed on {label}: {max_samples} traces per problem\n");
    println!(
        "{} problems, {recorded} right as recorded (the first trace with the majority answer, graded by the run).\n",
        records.len()
    );
    println!("Rounds are the rule's defaults (beta: 1 trace, window W: W traces).\n");
    println!("| rule | right | lost / gained | settled early | mean traces | mean cost tokens | cost / fixed |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut fixed_cost = None;
    for (name, rule) in rules {
        let s =
            replay_votes(records, &rule, &options).with_context(|| format!("replaying {name}"))?;
        let base = *fixed_cost.get_or_insert(s.cost_mean);
        println!(
            "| {name} | {} | {} / {} | {} | {:.2} | {:.1} | {:.3} |",
            s.correct,
            s.lost,
            s.gained,
            s.settled,
            s.traces_mean,
            s.cost_mean,
            s.cost_mean / base.max(1e-9)
        );
    }
    Ok(())
}
