//! llama.cpp's llama-bench as the reference: one run of one test at a time, so its runs
//! can be interleaved with terse's and both see the same machine state.

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A llama-bench binary known to start.
pub struct LlamaBench {
    path: PathBuf,
}

/// The fields of one llama-bench JSON record that identify its test and give its speed.
#[derive(Debug, Deserialize)]
struct Record {
    n_prompt: usize,
    n_gen: usize,
    avg_ts: f64,
}

impl LlamaBench {
    /// Checks that `path` runs (`--version`), so a wrong path fails before any test.
    pub fn new(path: &Path) -> Result<Self> {
        let output = Command::new(path)
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run llama-bench at {}", path.display()))?;
        check_status(path, &output)?;
        Ok(LlamaBench {
            path: path.to_path_buf(),
        })
    }

    /// Tokens per second of one llama-bench run (`-r 1`, after its own warm-up) of the
    /// test `-p n_prompt -n n_gen` on `model`, one of the two being 0.
    pub fn run(&self, model: &Path, threads: usize, n_prompt: usize, n_gen: usize) -> Result<f64> {
        let output = Command::new(&self.path)
            .arg("-m")
            .arg(model)
            .args(["-t", &threads.to_string()])
            .args(["-p", &n_prompt.to_string(), "-n", &n_gen.to_string()])
            .args(["-r", "1", "-o", "json"])
            .output()
            .with_context(|| format!("cannot run llama-bench at {}", self.path.display()))?;
        check_status(&self.path, &output)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        tokens_per_s(&stdout, n_prompt, n_gen).with_context(|| {
            format!(
                "reading the output of llama-bench at {}",
                self.path.display()
            )
        })
    }
}

/// A failed run becomes one error line naming the binary and the end of its stderr.
fn check_status(path: &Path, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = match tail[tail.len().saturating_sub(3)..].join(" | ") {
        t if t.is_empty() => "no output on stderr".to_string(),
        t => t,
    };
    bail!(
        "llama-bench at {} failed ({}): {tail}",
        path.display(),
        output.status
    )
}

/// `avg_ts` of the record of test (n_prompt, n_gen) in llama-bench's `-o json` output.
fn tokens_per_s(json: &str, n_prompt: usize, n_gen: usize) -> Result<f64> {
    let records: Vec<Record> =
        serde_json::from_str(json).context("expected a JSON array of test records")?;
    records
        .iter()
        .find(|r| r.n_prompt == n_prompt && r.n_gen == n_gen)
        .map(|r| r.avg_ts)
        .ok_or_else(|| anyhow!("no record with n_prompt {n_prompt} and n_gen {n_gen}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Abridged from a real `llama-bench -p 16 -n 4 -r 1 -o json` run (b11434).
    const OUTPUT: &str = r#"[
  {
    "build_number": 11434,
    "model_type": "gemma3 270M Q4_K - Medium",
    "n_threads": 2,
    "n_prompt": 16,
    "n_gen": 0,
    "n_depth": 0,
    "avg_ns": 73964175,
    "avg_ts": 216.320942,
    "samples_ts": [ 216.321 ]
  },
  {
    "build_number": 11434,
    "model_type": "gemma3 270M Q4_K - Medium",
    "n_threads": 2,
    "n_prompt": 0,
    "n_gen": 4,
    "n_depth": 0,
    "avg_ns": 72122780,
    "avg_ts": 55.460979,
    "samples_ts": [ 55.461 ]
  }
]"#;

    #[test]
    fn picks_the_record_of_the_test() {
        assert_eq!(tokens_per_s(OUTPUT, 16, 0).ok(), Some(216.320942));
        assert_eq!(tokens_per_s(OUTPUT, 0, 4).ok(), Some(55.460979));
    }

    #[test]
    fn a_missing_test_or_bad_output_is_an_error() {
        let missing = tokens_per_s(OUTPUT, 512, 0).map_err(|e| e.to_string());
        assert_eq!(
            missing,
            Err("no record with n_prompt 512 and n_gen 0".to_string())
        );
        assert!(tokens_per_s("| model | size |", 16, 0).is_err());
    }

    #[test]
    fn a_missing_binary_names_its_path() {
        let err = LlamaBench::new(Path::new("/nonexistent/llama-bench"))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/llama-bench"), "{err}");
    }
}
