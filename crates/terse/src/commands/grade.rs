//! `terse grade`: check the checker — extract an answer from a text and grade it.

use anyhow::{Context, Result};
use clap::Args;
use terse_eval::{grade_text, ExtractOptions, GradeOptions};

#[derive(Args, Debug)]
pub struct GradeArgs {
    /// The gold answer (negative numbers such as `-5` are values, not flags).
    #[arg(long, allow_hyphen_values = true)]
    pub gold: String,
    /// The model output to grade.
    #[arg(allow_hyphen_values = true)]
    pub text: String,
    /// Extraction rules in order (hashes, boxed, answer_is, final_answer, last_number).
    #[arg(long)]
    pub rules: Option<String>,
    /// Let `5%` equal `0.05` (by default `5%` equals `5`, as GSM8K writes golds).
    #[arg(long)]
    pub percent_as_fraction: bool,
    /// Compare lists as multisets instead of in order.
    #[arg(long)]
    pub unordered_lists: bool,
}

pub fn run(args: GradeArgs) -> Result<()> {
    let extract = match &args.rules {
        Some(list) => ExtractOptions::parse_list(list).context("--rules")?,
        None => ExtractOptions::default(),
    };
    let options = GradeOptions {
        percent_as_fraction: args.percent_as_fraction,
        unordered_lists: args.unordered_lists,
    };
    let result = grade_text(&args.text, &args.gold, &extract, &options);
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
