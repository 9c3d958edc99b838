//! Results of `terse bench` and their two forms: a markdown table like llama-bench's
//! for people, a JSON array for scripts.

use crate::commands::info::human_bytes;
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;
use terse_engine::{Engine, Profile};

/// The model under test.
pub struct ModelSummary {
    /// File name without `.gguf`.
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    pub n_params: u64,
    /// Weight bytes read to generate one token.
    pub bytes_per_token: usize,
}

impl ModelSummary {
    pub fn new(engine: &Engine) -> Self {
        let path = engine.path();
        ModelSummary {
            name: path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into(),
            ),
            path: path.display().to_string(),
            size_bytes: engine.gguf().file_size(),
            n_params: engine.gguf().tensors().iter().map(|t| t.n_elements()).sum(),
            bytes_per_token: engine.weight_bytes_per_token(),
        }
    }
}

/// The timed runs of one test.
pub struct TestResult {
    pub test: String,
    /// A tgN test, bounded by memory bandwidth.
    pub generation: bool,
    /// Tokens processed by one run.
    pub n_tokens: usize,
    /// Tokens per second of each run.
    pub samples: Vec<f64>,
    /// Total time of the timed runs.
    pub elapsed: Duration,
    /// Tokens per second of each interleaved llama-bench run.
    pub llama_cpp_samples: Vec<f64>,
    /// Median tokens per second over the sequential way of the same work (mixed batched).
    pub speedup_over_sequential: Option<f64>,
    /// Where the time of the timed runs went (empty unless profiling).
    pub profile: Profile,
}

impl TestResult {
    pub fn new(test: String, generation: bool) -> Self {
        TestResult {
            test,
            generation,
            n_tokens: 0,
            samples: Vec::new(),
            elapsed: Duration::ZERO,
            llama_cpp_samples: Vec::new(),
            speedup_over_sequential: None,
            profile: Profile::default(),
        }
    }
}

/// Median, smallest and largest of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// None for no samples; the median of an even count is the mean of the middle two.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Some(Spread { median, min, max })
    }
}

/// Everything `terse bench` measured.
pub struct BenchReport {
    pub model: ModelSummary,
    pub n_threads: usize,
    /// The kernel level the engine ran at.
    pub kernels: terse_kernels::Level,
    pub memory_bandwidth_bytes_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub kv_cache_bytes: u64,
    pub kv_cache_tokens: usize,
    pub profiled: bool,
    pub results: Vec<TestResult>,
}

#[derive(Serialize)]
struct JsonTest<'a> {
    test: &'a str,
    model: &'a str,
    model_path: &'a str,
    model_size_bytes: u64,
    n_params: u64,
    n_threads: usize,
    kernels: &'a str,
    n_tokens: usize,
    repetitions: usize,
    tokens_per_s_median: f64,
    tokens_per_s_min: f64,
    tokens_per_s_max: f64,
    samples_tokens_per_s: &'a [f64],
    bytes_per_token: usize,
    memory_bandwidth_bytes_per_s: f64,
    bandwidth_limit_tokens_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent_of_bandwidth_limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_bytes: Option<u64>,
    kv_cache_bytes: u64,
    kv_cache_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    llama_cpp_tokens_per_s_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    llama_cpp_samples_tokens_per_s: Option<&'a [f64]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup_over_sequential: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<ProfileRow>>,
}

/// One kind of operation in a test's profile.
#[derive(Serialize)]
struct ProfileRow {
    kind: String,
    total_ms: f64,
    percent_of_test: f64,
    calls: u64,
    /// Weight bytes read per second of the operation's time (matrix products only).
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_gb_per_s: Option<f64>,
}

/// Time of a test outside every timed operation: batch bookkeeping and the like.
const UNTIMED: &str = "outside timed ops";

impl BenchReport {
    /// Tokens per second that reading every weight once per token allows.
    fn bandwidth_limit(&self) -> f64 {
        self.memory_bandwidth_bytes_per_s / self.model.bytes_per_token.max(1) as f64
    }

    fn percent_of_limit(&self, result: &TestResult, spread: Spread) -> Option<f64> {
        result
            .generation
            .then(|| 100.0 * spread.median / self.bandwidth_limit())
    }

    pub fn json(&self) -> serde_json::Result<String> {
        let tests: Vec<JsonTest> = self
            .results
            .iter()
            .filter_map(|r| {
                let spread = Spread::of(&r.samples)?;
                let llama = Spread::of(&r.llama_cpp_samples);
                Some(JsonTest {
                    test: &r.test,
                    model: &self.model.name,
                    model_path: &self.model.path,
                    model_size_bytes: self.model.size_bytes,
                    n_params: self.model.n_params,
                    n_threads: self.n_threads,
                    kernels: self.kernels.name(),
                    n_tokens: r.n_tokens,
                    repetitions: r.samples.len(),
                    tokens_per_s_median: spread.median,
                    tokens_per_s_min: spread.min,
                    tokens_per_s_max: spread.max,
                    samples_tokens_per_s: &r.samples,
                    bytes_per_token: self.model.bytes_per_token,
                    memory_bandwidth_bytes_per_s: self.memory_bandwidth_bytes_per_s,
                    bandwidth_limit_tokens_per_s: self.bandwidth_limit(),
                    percent_of_bandwidth_limit: self.percent_of_limit(r, spread),
                    peak_rss_bytes: self.peak_rss_bytes,
                    kv_cache_bytes: self.kv_cache_bytes,
                    kv_cache_tokens: self.kv_cache_tokens,
                    llama_cpp_tokens_per_s_median: llama.map(|l| l.median),
                    llama_cpp_samples_tokens_per_s: llama.map(|_| r.llama_cpp_samples.as_slice()),
                    ratio: llama.map(|l| spread.median / l.median),
                    speedup_over_sequential: r.speedup_over_sequential,
                    profile: self.profiled.then(|| profile_rows(r)),
                })
            })
            .collect();
        serde_json::to_string_pretty(&tests)
    }

    pub fn markdown(&self) -> String {
        let compared = self.results.iter().any(|r| !r.llama_cpp_samples.is_empty());
        let mut out = String::new();
        out.push_str("| model | size | params | threads | test | t/s | min–max | % of bw limit |");
        if compared {
            out.push_str(" llama.cpp t/s | terse/llama.cpp |");
        }
        out.push_str("\n| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
        if compared {
            out.push_str(" ---: | ---: |");
        }
        out.push('\n');
        for r in &self.results {
            let Some(spread) = Spread::of(&r.samples) else {
                continue;
            };
            let percent = self
                .percent_of_limit(r, spread)
                .map_or(String::new(), |p| format!("{p:.0}%"));
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} | {:.2} | {:.2}–{:.2} | {percent} |",
                self.model.name,
                human_bytes(self.model.size_bytes),
                human_params(self.model.n_params),
                self.n_threads,
                r.test,
                spread.median,
                spread.min,
                spread.max,
            );
            if compared {
                match Spread::of(&r.llama_cpp_samples) {
                    Some(llama) => {
                        let _ = write!(
                            out,
                            " {:.2} | {:.2} |",
                            llama.median,
                            spread.median / llama.median
                        );
                    }
                    None => out.push_str(" | |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "kernels: {} (CPU features used: {})",
            self.kernels,
            self.kernels.features()
        );
        let _ = writeln!(
            out,
            "memory read bandwidth: {:.1} GB/s on {} threads; decode limit {:.1} t/s at {} of weights per token",
            self.memory_bandwidth_bytes_per_s / 1e9,
            self.n_threads,
            self.bandwidth_limit(),
            human_bytes(self.model.bytes_per_token as u64),
        );
        for r in &self.results {
            if let Some(speedup) = r.speedup_over_sequential {
                let _ = writeln!(out, "{}: {speedup:.2}× the t/s of sequential", r.test);
            }
        }
        let peak = self
            .peak_rss_bytes
            .map_or(String::new(), |b| format!("peak RSS {}; ", human_bytes(b)));
        let _ = writeln!(
            out,
            "{peak}model file {}; KV cache {} ({} tokens, f16)",
            human_bytes(self.model.size_bytes),
            human_bytes(self.kv_cache_bytes),
            self.kv_cache_tokens,
        );
        if self.profiled {
            for r in &self.results {
                out.push_str(&profile_markdown(r));
            }
        }
        out
    }
}

/// The profile of `result`, largest share first, with the untimed remainder last.
fn profile_rows(result: &TestResult) -> Vec<ProfileRow> {
    let test_s = result.elapsed.as_secs_f64().max(1e-9);
    let row = |kind: String, total: Duration, calls: u64, weight_bytes: u64| ProfileRow {
        kind,
        total_ms: total.as_secs_f64() * 1e3,
        percent_of_test: 100.0 * total.as_secs_f64() / test_s,
        calls,
        weight_gb_per_s: (weight_bytes > 0)
            .then(|| weight_bytes as f64 / total.as_secs_f64().max(1e-9) / 1e9),
    };
    let mut entries: Vec<_> = result.profile.entries().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.total));
    let timed: Duration = entries.iter().map(|e| e.total).sum();
    let mut rows: Vec<ProfileRow> = entries
        .into_iter()
        .map(|e| row(e.kind.clone(), e.total, e.calls, e.weight_bytes))
        .collect();
    rows.push(row(
        UNTIMED.to_string(),
        result.elapsed.saturating_sub(timed),
        0,
        0,
    ));
    rows
}

fn profile_markdown(result: &TestResult) -> String {
    let mut out = format!(
        "\nprofile of {}: {} runs, {:.1} ms in all (profiling adds a little time to every operation)\n\n",
        result.test,
        result.samples.len(),
        result.elapsed.as_secs_f64() * 1e3
    );
    out.push_str("| op | total ms | % of test | calls | weight GB/s |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    for row in profile_rows(result) {
        let bandwidth = row
            .weight_gb_per_s
            .map_or(String::new(), |g| format!("{g:.1}"));
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {} | {bandwidth} |",
            row.kind, row.total_ms, row.percent_of_test, row.calls
        );
    }
    out
}

/// Parameter count as llama-bench shows it: "494.03 M", "1.54 B".
fn human_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} B", n as f64 / 1e9)
    } else {
        format!("{:.2} M", n as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!(
            odd,
            Some(Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(
            even,
            Some(Spread {
                median: 2.5,
                min: 1.0,
                max: 4.0
            })
        );
        assert_eq!(
            Spread::of(&[7.5]),
            Some(Spread {
                median: 7.5,
                min: 7.5,
                max: 7.5
            })
        );
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn params_in_millions_or_billions() {
        assert_eq!(human_params(494_032_768), "494.03 M");
        assert_eq!(human_params(1_543_714_304), "1.54 B");
    }

    #[test]
    fn profile_rows_end_with_the_untimed_remainder() {
        let mut result = TestResult::new("tg4".into(), true);
        result.elapsed = Duration::from_millis(100);
        result
            .profile
            .record("attention", Duration::from_millis(20), 4);
        result
            .profile
            .record("argmax", Duration::from_millis(30), 4);
        let rows = profile_rows(&result);
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["argmax", "attention", UNTIMED]);
        assert!((rows[2].total_ms - 50.0).abs() < 1e-9);
        assert!((rows[0].percent_of_test - 30.0).abs() < 1e-9);
    }
}
