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
use terse_eval::votes::{recorded_traces, replay_votes, with_greedy_first};
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
    /// Consistency: fractions of the traces, most confident first, that vote
    /// (DeepConf's filter), each replayed with a plain and a confidence-weighted vote.
    #[arg(long, value_delimiter = ',', default_value = "1,0.9,0.6,0.4,0.1")]
    pub keep: Vec<f64>,
    /// Consistency: a greedy run (`--strategy none`, temperature 0) on the same
    /// problems, whose answers stand in for each first trace to replay `first_greedy`
    /// rules.
    #[arg(long)]
    pub greedy: Option<PathBuf>,
}

pub fn run(args: OracleArgs) -> Result<()> {
    let run = load_run(&args.run).with_context(|| format!("loading run {}", args.run.display()))?;
    if run.records.iter().any(|r| !recorded_traces(r).is_empty()) {
        consistency_rules(&run.label, &run.records, &args)?;
        if let Some(path) = &args.greedy {
            let greedy =
                load_run(path).with_context(|| format!("loading run {}", path.display()))?;
            greedy_first_rules(&run.records, &greedy.label, &greedy.records, &args)?;
        }
        return Ok(());
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

/// A replayed rule, through the strategy's own option parser, so it is one
/// `--strategy consistency` would accept (and a bad value is the same error).
fn rule(
    max_samples: usize,
    name: String,
    options: &[String],
) -> Result<(String, ConsistencyOptions)> {
    let mut all = vec![format!("max_samples={max_samples}")];
    all.extend_from_slice(options);
    let spec = StrategySpec::parse("consistency", &all)
        .with_context(|| format!("replaying {name} on {max_samples} traces"))?;
    let options = spec
        .consistency()
        .cloned()
        .context("a consistency chain has a consistency stage")?;
    Ok((name, options))
}

fn max_samples(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| recorded_traces(r).len())
        .min()
        .unwrap_or(0)
}

/// `first_greedy` rules: the greedy run's answer as trace 0, the fixed run's samples
/// after it.
fn greedy_first_rules(
    records: &[Record],
    greedy_label: &str,
    greedy: &[Record],
    args: &OracleArgs,
) -> Result<()> {
    let replaced = with_greedy_first(records, greedy)?;
    let options = GradeOptions::default();
    let fixed_cost = replay_votes(
        records,
        &rule(max_samples(records), "fixed".into(), &["rule=fixed".into()])?.1,
        &options,
    )?
    .cost_mean;
    println!("\n## First trace greedy ({greedy_label}), then the samples\n");
    println!("Each first trace is the greedy run's answer and tokens; lost / gained and cost / fixed are against the fixed run above.\n");
    println!("| rule | max traces | right | lost / gained | settled early | mean traces | mean cost tokens | cost / fixed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let most = max_samples(records);
    let mut rules = Vec::new();
    for max in (2..=most).filter(|&m| m == 3 || m == most) {
        for &window in args.window.iter().filter(|&&w| (2..=max).contains(&w)) {
            rules.push((
                max,
                rule(
                    max,
                    format!("window {window}"),
                    &[
                        "rule=window".into(),
                        format!("window={window}"),
                        "first_greedy=true".into(),
                    ],
                )?,
            ));
        }
        rules.push((
            max,
            rule(
                max,
                "fixed".into(),
                &["rule=fixed".into(), "first_greedy=true".into()],
            )?,
        ));
    }
    for (max, (name, rule)) in rules {
        let s = replay_votes(&replaced, &rule, &options)
            .with_context(|| format!("replaying {name} after the greedy trace"))?;
        println!(
            "| {name} | {max} | {} | {} / {} | {} | {:.2} | {:.1} | {:.3} |",
            s.correct,
            s.lost,
            s.gained,
            s.settled,
            s.traces_mean,
            s.cost_mean,
            s.cost_mean / fixed_cost.max(1e-9)
        );
    }
    Ok(())
}

/// Adaptive stopping rules replayed on a `fixed` consistency run's traces.
fn consistency_rules(label: &str, records: &[Record], args: &OracleArgs) -> Result<()> {
    let max_samples = max_samples(records);
    let rule = |name: String, options: &[String]| rule(max_samples, name, options);
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

    println!("\n## Confidence filter and vote (DeepConf offline) on all {max_samples} traces\n");
    println!("A trace's confidence is its mean token log-probability; `keep` lets the most confident fraction of the traces with an answer vote, `confidence` weighs each vote by exp(confidence). Cost is the fixed run's: the filter decides only the answer.\n");
    println!("| keep | vote | right | lost / gained |");
    println!("|---:|---|---:|---:|");
    for &keep in &args.keep {
        for vote in ["majority", "confidence"] {
            let (_, rule) = rule(
                format!("keep {keep} vote {vote}"),
                &[
                    "rule=fixed".into(),
                    format!("keep={keep}"),
                    format!("vote={vote}"),
                ],
            )?;
            let s = replay_votes(records, &rule, &options)
                .with_context(|| format!("replaying keep {keep} vote {vote}"))?;
            println!(
                "| {keep} | {vote} | {} | {} / {} |",
                s.correct, s.lost, s.gained
            );
        }
    }
    Ok(())
}
