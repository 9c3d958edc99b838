//! Run summaries (`summary.json`) and human reports (`report.md` with plots).
//!
//! A [`Summary`] is a pure function of the records (plus the wall time), so it can be
//! recomputed at any moment from `records.jsonl`, e.g. after a resumed run.
//! Accuracy is reported twice: lenient (`correct`, any configured rule) and strict
//! (`correct_strict`, only rules with an explicit answer marker).

use crate::plot::{self, PlotError, RunPoint};
use crate::record::Record;
use crate::stats::{self, Z95};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use terse_reason::adaptive::parse_route;

pub const SUMMARY_FILE: &str = "summary.json";
pub const REPORT_FILE: &str = "report.md";
/// Stem of the output-token histogram (`.png` and `.svg`).
pub const HISTOGRAM_STEM: &str = "tokens_hist";
/// Stem of the single-run accuracy-versus-tokens plot.
pub const SCATTER_STEM: &str = "accuracy_vs_tokens";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise the summary: {0}")]
    Serialize(serde_json::Error),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Aggregate numbers of a run. Statistics over an empty set are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub label: String,
    /// Records (problem × sample).
    pub n: usize,
    /// Distinct problem ids.
    pub problems: usize,
    pub samples_per_problem: usize,
    pub correct: usize,
    pub accuracy: Option<f64>,
    pub accuracy_ci95: [f64; 2],
    pub correct_strict: usize,
    pub accuracy_strict: Option<f64>,
    pub accuracy_strict_ci95: [f64; 2],
    /// Records where no rule found an answer.
    pub extraction_failures: usize,
    /// How often each extraction rule fired.
    pub rules: BTreeMap<String, usize>,
    pub output_tokens_total: u64,
    pub output_tokens_mean: Option<f64>,
    pub output_tokens_median: Option<f64>,
    pub output_tokens_p90: Option<f64>,
    pub output_tokens_correct_mean: Option<f64>,
    pub output_tokens_correct_median: Option<f64>,
    pub output_tokens_correct_p90: Option<f64>,
    pub prompt_tokens_mean: Option<f64>,
    /// All output tokens spent divided by the number of correct answers.
    pub tokens_per_correct: Option<f64>,
    /// Everything processed beyond the prompt: decoded + probe + injected tokens.
    #[serde(default)]
    pub cost_tokens_total: u64,
    #[serde(default)]
    pub cost_tokens_mean: Option<f64>,
    #[serde(default)]
    pub probe_tokens_mean: Option<f64>,
    #[serde(default)]
    pub injected_tokens_mean: Option<f64>,
    /// Prompt tokens the prefix cache held, per answer.
    #[serde(default)]
    pub prompt_cached_tokens_mean: Option<f64>,
    /// Cost tokens divided by the number of correct answers.
    #[serde(default)]
    pub cost_per_correct: Option<f64>,
    /// Probes' share of the local engine's forward-pass time over the run's answers
    /// (each pass split by rows, so an upper bound); `None` on a remote backend.
    #[serde(default)]
    pub probe_forward_share: Option<f64>,
    /// How often each stop reason ended an answer.
    #[serde(default)]
    pub stop_reasons: BTreeMap<String, usize>,
    /// `adaptive`: how many answers each class's preset gave (`easy → be-brief`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adaptive_routes: BTreeMap<String, usize>,
    pub latency_mean_s: Option<f64>,
    pub latency_p50_s: Option<f64>,
    pub latency_p90_s: Option<f64>,
    /// Output tokens per second of generation latency: the speed one request sees
    /// (with concurrency, requests share the machine, so this is per stream).
    pub throughput_tokens_per_s: Option<f64>,
    /// Output tokens per second of the run's wall time: the speed of the whole run.
    #[serde(default)]
    pub output_tokens_per_wall_s: Option<f64>,
    /// Records whose generation came from the cache.
    pub cached: usize,
    /// Wall time of the run, summed over resumed sessions.
    pub wall_s: f64,
    /// Mean over problems of unbiased pass@k, for k = 1..samples (only with >1 sample).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pass_at_k: BTreeMap<String, f64>,
    /// Mean over problems of [`stats::eff_at_k_tokens`] with wrong answers costing
    /// `max_tokens`, for k = 1..samples (only with >1 sample).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eff_at_k_tokens: BTreeMap<String, f64>,
}

impl Summary {
    pub fn from_records(label: &str, records: &[Record], wall_s: f64) -> Summary {
        let n = records.len();
        let correct = records.iter().filter(|r| r.correct).count();
        let correct_strict = records.iter().filter(|r| r.correct_strict).count();
        let mut rules = BTreeMap::new();
        for record in records {
            *rules.entry(record.rule.name().to_string()).or_insert(0) += 1;
        }
        let output: Vec<f64> = records
            .iter()
            .map(|r| r.usage.output_tokens as f64)
            .collect();
        let output_correct: Vec<f64> = records
            .iter()
            .filter(|r| r.correct)
            .map(|r| r.usage.output_tokens as f64)
            .collect();
        let prompt: Vec<f64> = records
            .iter()
            .map(|r| r.usage.prompt_tokens as f64)
            .collect();
        let latency: Vec<f64> = records.iter().map(|r| r.latency_s).collect();
        let output_tokens_total: u64 = records.iter().map(|r| r.usage.output_tokens).sum();
        let per_record = |f: &dyn Fn(&Record) -> u64| -> Vec<f64> {
            records.iter().map(|r| f(r) as f64).collect()
        };
        let cost = per_record(&|r| r.usage.cost_tokens());
        let cost_tokens_total: u64 = records.iter().map(|r| r.usage.cost_tokens()).sum();
        let mut stop_reasons = BTreeMap::new();
        let mut adaptive_routes = BTreeMap::new();
        for record in records {
            *stop_reasons.entry(record.stop_reason.clone()).or_insert(0) += 1;
            let route = record
                .events
                .iter()
                .find(|e| e.strategy == "adaptive" && e.kind == "route");
            let routed = route
                .and_then(|e| e.detail.as_deref())
                .and_then(parse_route);
            if let Some((class, preset)) = routed {
                *adaptive_routes
                    .entry(format!("{class} → {preset}"))
                    .or_insert(0) += 1;
            }
        }
        let latency_total: f64 = latency.iter().sum();
        let ratio = |count: usize| (n > 0).then(|| count as f64 / n as f64);
        let (lo, hi) = stats::wilson_ci(correct, n, Z95);
        let (strict_lo, strict_hi) = stats::wilson_ci(correct_strict, n, Z95);

        let mut by_problem: HashMap<&str, Vec<&Record>> = HashMap::new();
        for record in records {
            by_problem
                .entry(record.id.as_str())
                .or_default()
                .push(record);
        }
        let samples_per_problem = by_problem.values().map(Vec::len).max().unwrap_or(0);
        let (pass_at_k, eff_at_k_tokens) = sample_metrics(&by_problem, samples_per_problem);

        Summary {
            label: label.to_string(),
            n,
            problems: by_problem.len(),
            samples_per_problem,
            correct,
            accuracy: ratio(correct),
            accuracy_ci95: [lo, hi],
            correct_strict,
            accuracy_strict: ratio(correct_strict),
            accuracy_strict_ci95: [strict_lo, strict_hi],
            extraction_failures: records.iter().filter(|r| r.extracted.is_none()).count(),
            rules,
            output_tokens_total,
            output_tokens_mean: stats::mean(&output),
            output_tokens_median: stats::median(&output),
            output_tokens_p90: stats::percentile(&output, 90.0),
            output_tokens_correct_mean: stats::mean(&output_correct),
            output_tokens_correct_median: stats::median(&output_correct),
            output_tokens_correct_p90: stats::percentile(&output_correct, 90.0),
            prompt_tokens_mean: stats::mean(&prompt),
            tokens_per_correct: (correct > 0).then(|| output_tokens_total as f64 / correct as f64),
            cost_tokens_total,
            cost_tokens_mean: stats::mean(&cost),
            probe_tokens_mean: stats::mean(&per_record(&|r| r.usage.probe_tokens())),
            injected_tokens_mean: stats::mean(&per_record(&|r| r.usage.injected_tokens)),
            prompt_cached_tokens_mean: stats::mean(&per_record(&|r| r.usage.prompt_cached_tokens)),
            cost_per_correct: (correct > 0).then(|| cost_tokens_total as f64 / correct as f64),
            probe_forward_share: probe_forward_share(records),
            stop_reasons,
            adaptive_routes,
            latency_mean_s: stats::mean(&latency),
            latency_p50_s: stats::median(&latency),
            latency_p90_s: stats::percentile(&latency, 90.0),
            throughput_tokens_per_s: (latency_total > 0.0)
                .then(|| output_tokens_total as f64 / latency_total),
            output_tokens_per_wall_s: (wall_s > 0.0).then(|| output_tokens_total as f64 / wall_s),
            cached: records.iter().filter(|r| r.cached).count(),
            wall_s,
            pass_at_k,
            eff_at_k_tokens,
        }
    }

    /// This run as a point of the accuracy-versus-tokens plane.
    pub fn point(&self) -> Option<RunPoint> {
        Some(RunPoint {
            label: self.label.clone(),
            accuracy: self.accuracy?,
            ci95: self.accuracy_ci95,
            tokens_mean: self.cost_tokens_mean?,
        })
    }
}

/// pass@k and eff@k averaged over problems that have at least k samples.
/// Probe forward time over all forward time, over the records that carry it.
fn probe_forward_share(records: &[Record]) -> Option<f64> {
    let (probe, all) = records
        .iter()
        .filter_map(|r| r.engine_time)
        .fold((0.0, 0.0), |(p, a), t| {
            (p + t.probe_forward_s, a + t.forward_s)
        });
    (all > 0.0).then(|| probe / all)
}

fn sample_metrics(
    by_problem: &HashMap<&str, Vec<&Record>>,
    max_samples: usize,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut pass = BTreeMap::new();
    let mut eff = BTreeMap::new();
    if max_samples < 2 {
        return (pass, eff);
    }
    for k in 1..=max_samples {
        let mut pass_values = Vec::new();
        let mut eff_values = Vec::new();
        for samples in by_problem.values() {
            let correct = samples.iter().filter(|r| r.correct).count();
            if let Some(p) = stats::pass_at_k(samples.len(), correct, k) {
                pass_values.push(p);
            }
            let failure_cost = samples
                .iter()
                .map(|r| f64::from(r.max_tokens).max(r.usage.output_tokens as f64))
                .fold(0.0, f64::max);
            let points: Vec<(f64, bool)> = samples
                .iter()
                .map(|r| (r.usage.output_tokens as f64, r.correct))
                .collect();
            if let Some(e) = stats::eff_at_k_tokens(&points, k, failure_cost) {
                eff_values.push(e);
            }
        }
        if let Some(mean) = stats::mean(&pass_values) {
            pass.insert(k.to_string(), mean);
        }
        if let Some(mean) = stats::mean(&eff_values) {
            eff.insert(k.to_string(), mean);
        }
    }
    (pass, eff)
}

/// Writes `summary.json`.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<(), ReportError> {
    let path = dir.join(SUMMARY_FILE);
    let json = serde_json::to_string_pretty(summary).map_err(ReportError::Serialize)?;
    std::fs::write(&path, json + "\n").map_err(|source| ReportError::Io { path, source })
}

/// Reads `summary.json`, if present and valid.
pub fn read_summary(dir: &Path) -> Option<Summary> {
    let text = std::fs::read_to_string(dir.join(SUMMARY_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes `summary.json`, the plots and `report.md` of a run directory.
pub fn write_run_outputs(
    dir: &Path,
    summary: &Summary,
    records: &[Record],
) -> Result<(), ReportError> {
    write_summary(dir, summary)?;
    let samples: Vec<(f64, bool)> = records
        .iter()
        .map(|r| (r.usage.output_tokens as f64, r.correct))
        .collect();
    plot::token_histogram(&samples, &summary.label, &dir.join(HISTOGRAM_STEM))?;
    if let Some(point) = summary.point() {
        plot::accuracy_vs_tokens(&[point], &dir.join(SCATTER_STEM))?;
    }
    write_report_md(dir, summary, records)
}

/// Writes `report.md`: the numbers, the rules that fired, plots, and wrong answers.
pub fn write_report_md(
    dir: &Path,
    summary: &Summary,
    records: &[Record],
) -> Result<(), ReportError> {
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, render_report(summary, records))
        .map_err(|source| ReportError::Io { path, source })
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// The markdown text of a run report.
pub fn render_report(summary: &Summary, records: &[Record]) -> String {
    let s = summary;
    let mut md = String::new();
    let _ = writeln!(md, "# Eval report: {}\n", s.label);
    let _ = writeln!(md, "| metric | value |\n|---|---|");
    let rows = [
        (
            "records (problems × samples)",
            format!("{} ({} × {})", s.n, s.problems, s.samples_per_problem),
        ),
        (
            "accuracy (lenient)",
            format!(
                "{} ({}/{}), 95% CI [{:.1}%, {:.1}%]",
                pct(s.accuracy),
                s.correct,
                s.n,
                100.0 * s.accuracy_ci95[0],
                100.0 * s.accuracy_ci95[1]
            ),
        ),
        (
            "accuracy (strict)",
            format!(
                "{} ({}/{}), 95% CI [{:.1}%, {:.1}%]",
                pct(s.accuracy_strict),
                s.correct_strict,
                s.n,
                100.0 * s.accuracy_strict_ci95[0],
                100.0 * s.accuracy_strict_ci95[1]
            ),
        ),
        ("extraction failures", s.extraction_failures.to_string()),
        (
            "output tokens mean / median / p90",
            format!(
                "{} / {} / {}",
                fmt_opt(s.output_tokens_mean, 1),
                fmt_opt(s.output_tokens_median, 1),
                fmt_opt(s.output_tokens_p90, 1)
            ),
        ),
        (
            "output tokens on correct mean / median / p90",
            format!(
                "{} / {} / {}",
                fmt_opt(s.output_tokens_correct_mean, 1),
                fmt_opt(s.output_tokens_correct_median, 1),
                fmt_opt(s.output_tokens_correct_p90, 1)
            ),
        ),
        (
            "tokens per correct answer",
            fmt_opt(s.tokens_per_correct, 1),
        ),
        (
            "cost tokens mean (output + probe + injected)",
            format!(
                "{} ({} + {} + {})",
                fmt_opt(s.cost_tokens_mean, 1),
                fmt_opt(s.output_tokens_mean, 1),
                fmt_opt(s.probe_tokens_mean, 1),
                fmt_opt(s.injected_tokens_mean, 1)
            ),
        ),
        (
            "cost tokens per correct answer",
            fmt_opt(s.cost_per_correct, 1),
        ),
        (
            "probes' share of forward-pass time (upper bound)",
            s.probe_forward_share
                .map_or("n/a".into(), |share| format!("{:.1}%", 100.0 * share)),
        ),
        (
            "stop reasons",
            s.stop_reasons
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "adaptive routes",
            if s.adaptive_routes.is_empty() {
                "–".into()
            } else {
                s.adaptive_routes
                    .iter()
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "prompt tokens mean (from the prefix cache)",
            format!(
                "{} ({})",
                fmt_opt(s.prompt_tokens_mean, 1),
                fmt_opt(s.prompt_cached_tokens_mean, 1)
            ),
        ),
        (
            "latency mean / p50 / p90 (s)",
            format!(
                "{} / {} / {}",
                fmt_opt(s.latency_mean_s, 3),
                fmt_opt(s.latency_p50_s, 3),
                fmt_opt(s.latency_p90_s, 3)
            ),
        ),
        (
            "output tokens/s per request (over its latency)",
            fmt_opt(s.throughput_tokens_per_s, 1),
        ),
        (
            "output tokens/s of the run (over wall time)",
            fmt_opt(s.output_tokens_per_wall_s, 1),
        ),
        ("cached generations", s.cached.to_string()),
        ("wall time (s)", format!("{:.1}", s.wall_s)),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    if !s.pass_at_k.is_empty() {
        let _ = writeln!(
            md,
            "\n| k | pass@k | eff@k (expected fewest tokens to a correct answer) |\n|---|---|---|"
        );
        for (k, pass) in &s.pass_at_k {
            let eff = s.eff_at_k_tokens.get(k).copied();
            let _ = writeln!(md, "| {k} | {:.3} | {} |", pass, fmt_opt(eff, 1));
        }
    }
    let _ = writeln!(md, "\n## Extraction rules\n\n| rule | records |\n|---|---|");
    for (rule, count) in &s.rules {
        let _ = writeln!(md, "| {rule} | {count} |");
    }
    let _ = writeln!(
        md,
        "\n## Plots\n\n![output tokens]({HISTOGRAM_STEM}.png)\n\n![accuracy vs tokens]({SCATTER_STEM}.png)"
    );
    let wrong: Vec<&Record> = records.iter().filter(|r| !r.correct).take(10).collect();
    if !wrong.is_empty() {
        let _ = writeln!(
            md,
            "\n## First wrong answers\n\n| id | sample | gold | extracted | rule | output tokens |\n|---|---|---|---|---|---|"
        );
        for r in wrong {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                md_cell(&r.id),
                r.sample,
                md_cell(&r.gold),
                md_cell(r.extracted.as_deref().unwrap_or("(none)")),
                r.rule,
                r.usage.output_tokens
            );
        }
    }
    md
}

/// Escapes a value for a markdown table cell and keeps it short.
pub fn md_cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .take(60)
        .collect();
    one_line.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Rule;
    use crate::record::tests::record;
    use terse_reason::EngineTime;

    #[test]
    fn the_probe_share_is_probe_time_over_all_forward_time_of_the_timed_records() {
        let mut records = vec![
            record("a", true, 100),
            record("b", true, 100),
            record("c", false, 100),
        ];
        assert_eq!(
            Summary::from_records("x", &records, 1.0).probe_forward_share,
            None
        );
        records[0].engine_time = Some(EngineTime {
            forward_s: 3.0,
            probe_forward_s: 0.5,
        });
        records[1].engine_time = Some(EngineTime {
            forward_s: 1.0,
            probe_forward_s: 0.5,
        });
        let s = Summary::from_records("x", &records, 1.0);
        assert_eq!(s.probe_forward_share, Some(0.25));
    }

    #[test]
    fn summary_counts_accuracy_tokens_and_rules() {
        let mut records = vec![
            record("a", true, 100),
            record("b", true, 300),
            record("c", false, 200),
            record("d", false, 400),
        ];
        records[1].rule = Rule::LastNumber;
        records[1].correct_strict = false;
        records[3].extracted = None;
        records[3].rule = Rule::None;
        let s = Summary::from_records("x", &records, 12.0);
        assert_eq!((s.n, s.problems, s.samples_per_problem), (4, 4, 1));
        assert_eq!(s.correct, 2);
        assert_eq!(s.accuracy, Some(0.5));
        assert_eq!(s.correct_strict, 1);
        assert_eq!(s.accuracy_strict, Some(0.25));
        assert_eq!(s.extraction_failures, 1);
        assert_eq!(s.output_tokens_total, 1000);
        assert_eq!(s.output_tokens_mean, Some(250.0));
        assert_eq!(s.output_tokens_median, Some(250.0));
        assert_eq!(s.output_tokens_correct_mean, Some(200.0));
        assert_eq!(s.tokens_per_correct, Some(500.0));
        assert_eq!(s.throughput_tokens_per_s, Some(500.0));
        assert_eq!(s.output_tokens_per_wall_s, Some(1000.0 / 12.0));
        assert_eq!(s.rules["hashes"], 2);
        assert_eq!(s.rules["last_number"], 1);
        assert_eq!(s.rules["none"], 1);
        let (lo, hi) = stats::wilson_ci(2, 4, Z95);
        assert_eq!(s.accuracy_ci95, [lo, hi]);
        assert!(s.pass_at_k.is_empty());
    }

    #[test]
    fn empty_summary_has_null_statistics() {
        let s = Summary::from_records("empty", &[], 0.0);
        assert_eq!(s.accuracy, None);
        assert_eq!(s.output_tokens_mean, None);
        assert_eq!(s.accuracy_ci95, [0.0, 1.0]);
        assert!(s.point().is_none());
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["accuracy"].is_null());
    }

    #[test]
    fn multiple_samples_give_pass_and_eff_at_k() {
        let mut records = Vec::new();
        for (sample, (correct, tokens)) in [(true, 100), (false, 50), (true, 300)]
            .into_iter()
            .enumerate()
        {
            let mut r = record("p", correct, tokens);
            r.sample = sample as u32;
            r.max_tokens = 1000;
            records.push(r);
        }
        let s = Summary::from_records("k", &records, 1.0);
        assert_eq!(s.samples_per_problem, 3);
        assert!((s.pass_at_k["1"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.pass_at_k["3"], 1.0);
        assert!((s.eff_at_k_tokens["1"] - 1400.0 / 3.0).abs() < 1e-9);
        assert!((s.eff_at_k_tokens["3"] - 100.0).abs() < 1e-9);
    }

    #[test]
    fn report_lists_metrics_and_escapes_wrong_answers() {
        let mut wrong = record("w|1", false, 10);
        wrong.extracted = Some("a|b\nc".into());
        let records = vec![record("a", true, 20), wrong];
        let s = Summary::from_records("demo", &records, 2.0);
        let md = render_report(&s, &records);
        assert!(md.contains("# Eval report: demo"));
        assert!(md.contains("| accuracy (lenient) | 50.0% (1/2)"));
        assert!(
            md.contains("| w\\|1 | 0 | 1 | a\\|b c | hashes | 10 |"),
            "{md}"
        );
        assert!(md.contains("tokens_hist.png"));
    }
}
