//! The `terse` command line: generate, chat, serve, inspect models, benchmark the engine
//! and manage the model cache.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "terse",
    version,
    about = "Cheap LLM reasoning: the same answers with fewer tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a raw prompt (--prompt) or one chat message (--chat).
    Generate(commands::generate::GenerateArgs),
    /// Interactive chat with history.
    Chat(commands::chat::ChatArgs),
    /// Show a model's metadata, tensors by type and size, and bytes read per token.
    Info(commands::info::InfoArgs),
    /// Measure accuracy against output tokens on a dataset.
    Eval(Box<commands::eval::EvalArgs>),
    /// Extract and grade one answer; prints {"extracted", "rule", "correct"}.
    Grade(commands::grade::GradeArgs),
    /// Compare runs problem by problem (McNemar, paired bootstrap, Pareto front).
    Compare(commands::compare::CompareArgs),
    /// Stop rules replayed on recorded traces: early exit on a probe-trace run (with
    /// its oracle bound), adaptive self-consistency on a fixed consistency run.
    Oracle(commands::oracle::OracleArgs),
    /// Fit the difficulty probe on a plain-CoT eval run (prompt hidden state → right?
    /// long?), report its cross-validated AUC and write it beside the model.
    TrainProbe(commands::train_probe::TrainProbeArgs),
    /// Prompt and generation speed like llama-bench, against the memory-bandwidth limit
    /// and optionally llama.cpp itself.
    Bench(Box<commands::bench::BenchArgs>),
    /// Serve the model over an OpenAI-compatible HTTP API, strategies per request.
    Serve(Box<commands::serve::ServeArgs>),
    /// Install and list models in the local cache ($TERSE_HOME, default ~/.cache/terse).
    Models(commands::models::ModelsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The kernel level is fixed for the whole process: choose it before any
    // kernel runs, so a bad `TERSE_KERNELS` or `--kernels` is an error here.
    let forced = match &cli.command {
        Command::Bench(args) => args.kernels,
        _ => None,
    };
    let chosen = match forced {
        Some(level) => terse_kernels::select(level),
        None => terse_kernels::select_from_env(),
    };
    if let Err(err) = chosen {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Generate(args) => commands::generate::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Eval(args) => commands::eval::run(*args),
        Command::Grade(args) => commands::grade::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Oracle(args) => commands::oracle::run(args),
        Command::TrainProbe(args) => commands::train_probe::run(args),
        Command::Bench(args) => commands::bench::run(*args),
        Command::Serve(args) => commands::serve::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
