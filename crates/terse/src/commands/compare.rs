//! `terse compare`: pair runs problem by problem (McNemar, paired bootstrap of the token
//! ratio) and draw them on the accuracy-vs-tokens plane with the Pareto front.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use terse_eval::compare::{compare, load_run, write_comparison, CompareOptions};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories; the first is the baseline the others are paired with.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Where comparison.md/.json and the plot go (default: <first run>/compare).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap resamples for the token-ratio interval.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|dir| load_run(dir).with_context(|| format!("loading run {}", dir.display())))
        .collect::<Result<Vec<_>>>()?;
    let comparison = compare(
        &runs,
        &CompareOptions {
            bootstrap_iterations: args.bootstrap,
            seed: args.seed,
        },
    );
    let out = args.out.unwrap_or_else(|| args.runs[0].join("compare"));
    let written = write_comparison(&out, &comparison)?;
    println!("{}", comparison.to_markdown());
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
