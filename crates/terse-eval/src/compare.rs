//! Problem-by-problem comparison of runs.
//!
//! Runs are paired on (problem id, sample index) with the first run as the baseline.
//! For each other run: accuracy difference on the paired problems with the exact
//! McNemar test, and the ratios of cost tokens (everything processed beyond the
//! prompt: decoded, probe and injected tokens), of output tokens and of latency
//! (other / baseline, ratio of totals over the pairs), each with a seeded paired
//! bootstrap 95% CI, beside the ratio of the runs' wall times. All runs are placed on
//! the accuracy-versus-cost plane with the Pareto front marked.

use crate::plot::{self, PlotError, RunPoint};
use crate::record::{read_records, Record, RecordError, RECORDS_FILE};
use crate::report::{self, md_cell, Summary};
use crate::run::{RunManifest, CONFIG_FILE};
use crate::stats::{self, RatioCi};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path} is not a run directory (no {RECORDS_FILE})")]
    NotARun { path: PathBuf },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise the comparison: {0}")]
    Serialize(serde_json::Error),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// A run directory read back.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub dir: PathBuf,
    pub label: String,
    pub records: Vec<Record>,
    pub summary: Summary,
}

/// Reads a run directory; the summary is recomputed from the records (a run killed
/// before writing `summary.json` still compares). The label comes from `config.json`,
/// else the directory name.
pub fn load_run(dir: &Path) -> Result<LoadedRun, CompareError> {
    let records_path = dir.join(RECORDS_FILE);
    if !records_path.is_file() {
        return Err(CompareError::NotARun {
            path: dir.to_path_buf(),
        });
    }
    let records = read_records(&records_path)?.records;
    let label = std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<RunManifest>(&text).ok())
        .map(|manifest| manifest.config.label)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| dir.display().to_string())
        });
    let wall_s = report::read_summary(dir).map_or(0.0, |s| s.wall_s);
    let summary = Summary::from_records(&label, &records, wall_s);
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        label,
        records,
        summary,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareOptions {
    pub bootstrap_iterations: usize,
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            bootstrap_iterations: 2000,
            seed: 0,
        }
    }
}

/// One run's row in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub label: String,
    pub n: usize,
    pub accuracy: Option<f64>,
    pub accuracy_ci95: [f64; 2],
    pub output_tokens_mean: Option<f64>,
    #[serde(default)]
    pub cost_tokens_mean: Option<f64>,
    #[serde(default)]
    pub wall_s: f64,
    pub on_pareto_front: bool,
}

/// A run paired with the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStat {
    pub baseline: String,
    pub other: String,
    pub n_paired: usize,
    pub accuracy_baseline: Option<f64>,
    pub accuracy_other: Option<f64>,
    /// other − baseline on the paired problems.
    pub accuracy_diff: Option<f64>,
    /// Pairs right only in the baseline.
    pub only_baseline_correct: usize,
    /// Pairs right only in the other run.
    pub only_other_correct: usize,
    pub mcnemar_p: f64,
    /// Output tokens, other / baseline, with a paired bootstrap 95% CI.
    pub token_ratio: Option<RatioCi>,
    /// Cost tokens (decoded + probe + injected), other / baseline.
    #[serde(default)]
    pub cost_ratio: Option<RatioCi>,
    /// Per-answer latency, other / baseline.
    #[serde(default)]
    pub latency_ratio: Option<RatioCi>,
    /// Engine forward-pass time per answer (its probes included), other / baseline;
    /// only when every paired answer carries it (local engine).
    #[serde(default)]
    pub forward_time_ratio: Option<RatioCi>,
    /// The runs' wall times, other / baseline, when both ran the same problems (not
    /// paired; comparable only when both ran fresh on an equally loaded machine).
    #[serde(default)]
    pub wall_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub runs: Vec<RunRow>,
    pub pairs: Vec<PairStat>,
}

/// Compares every run with the first one.
pub fn compare(runs: &[LoadedRun], options: &CompareOptions) -> Comparison {
    let points: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                r.summary.accuracy.unwrap_or(0.0),
                r.summary.cost_tokens_mean.unwrap_or(f64::INFINITY),
            )
        })
        .collect();
    let front = stats::pareto_front(&points);
    let rows = runs
        .iter()
        .enumerate()
        .map(|(i, r)| RunRow {
            label: r.label.clone(),
            n: r.summary.n,
            accuracy: r.summary.accuracy,
            accuracy_ci95: r.summary.accuracy_ci95,
            output_tokens_mean: r.summary.output_tokens_mean,
            cost_tokens_mean: r.summary.cost_tokens_mean,
            wall_s: r.summary.wall_s,
            on_pareto_front: r.summary.n > 0 && front.contains(&i),
        })
        .collect();
    let pairs = match runs.split_first() {
        Some((baseline, others)) => others
            .iter()
            .map(|other| pair(baseline, other, options))
            .collect(),
        None => Vec::new(),
    };
    Comparison { runs: rows, pairs }
}

fn pair(baseline: &LoadedRun, other: &LoadedRun, options: &CompareOptions) -> PairStat {
    let by_key: HashMap<(&str, u32), &Record> = baseline
        .records
        .iter()
        .map(|r| ((r.id.as_str(), r.sample), r))
        .collect();
    let mut matched: Vec<(&Record, &Record)> = other
        .records
        .iter()
        .filter_map(|o| by_key.get(&(o.id.as_str(), o.sample)).map(|b| (*b, o)))
        .collect();
    // Stable order so the seeded bootstrap does not depend on file order.
    matched.sort_by(|a, b| (&a.0.id, a.0.sample).cmp(&(&b.0.id, b.0.sample)));
    matched.dedup_by(|a, b| a.0.id == b.0.id && a.0.sample == b.0.sample);
    let n = matched.len();
    let base_correct = matched.iter().filter(|(b, _)| b.correct).count();
    let other_correct = matched.iter().filter(|(_, o)| o.correct).count();
    let only_baseline = matched
        .iter()
        .filter(|(b, o)| b.correct && !o.correct)
        .count();
    let only_other = matched
        .iter()
        .filter(|(b, o)| !b.correct && o.correct)
        .count();
    let fraction = |count: usize| (n > 0).then(|| count as f64 / n as f64);
    let column = |f: &dyn Fn(&Record) -> f64| -> (Vec<f64>, Vec<f64>) {
        matched.iter().map(|(b, o)| (f(b), f(o))).unzip()
    };
    let ratio = |(base, other): (Vec<f64>, Vec<f64>)| {
        stats::paired_bootstrap_ratio(&base, &other, options.bootstrap_iterations, options.seed)
    };
    let (base_tokens, other_tokens) = column(&|r| r.usage.output_tokens as f64);
    // Wall times of runs over different problem sets say nothing about each other.
    let same_problems = n == baseline.records.len() && n == other.records.len();
    PairStat {
        baseline: baseline.label.clone(),
        other: other.label.clone(),
        n_paired: n,
        accuracy_baseline: fraction(base_correct),
        accuracy_other: fraction(other_correct),
        accuracy_diff: fraction(other_correct)
            .zip(fraction(base_correct))
            .map(|(o, b)| o - b),
        only_baseline_correct: only_baseline,
        only_other_correct: only_other,
        mcnemar_p: stats::mcnemar_exact(only_baseline, only_other),
        token_ratio: ratio((base_tokens, other_tokens)),
        cost_ratio: ratio(column(&|r| r.usage.cost_tokens() as f64)),
        latency_ratio: ratio(column(&|r| r.latency_s)),
        forward_time_ratio: matched
            .iter()
            .all(|(b, o)| b.engine_time.is_some() && o.engine_time.is_some())
            .then(|| ratio(column(&|r| r.engine_time.map_or(0.0, |t| t.forward_s))))
            .flatten(),
        wall_ratio: (same_problems && baseline.summary.wall_s > 0.0 && other.summary.wall_s > 0.0)
            .then(|| other.summary.wall_s / baseline.summary.wall_s),
    }
}

impl Comparison {
    /// Markdown tables: runs with the front marked, then pairs against the baseline.
    pub fn to_markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}%", 100.0 * v));
        let num = |v: Option<f64>| v.map_or("–".to_string(), |t| format!("{t:.1}"));
        let mut md = String::from("# Comparison\n\n| run | n | accuracy | 95% CI | mean output tokens | mean cost tokens | wall s | Pareto |\n|---|---|---|---|---|---|---|---|\n");
        for r in &self.runs {
            let _ = writeln!(
                md,
                "| {} | {} | {} | [{:.1}%, {:.1}%] | {} | {} | {:.0} | {} |",
                md_cell(&r.label),
                r.n,
                pct(r.accuracy),
                100.0 * r.accuracy_ci95[0],
                100.0 * r.accuracy_ci95[1],
                num(r.output_tokens_mean),
                num(r.cost_tokens_mean),
                r.wall_s,
                if r.on_pareto_front { "★" } else { "" }
            );
        }
        if !self.pairs.is_empty() {
            md.push_str("\n| vs baseline | paired | Δ accuracy | only baseline / only other right | McNemar p | cost-token ratio [95% CI] | output-token ratio [95% CI] | latency ratio [95% CI] | forward-time ratio [95% CI] | wall ratio |\n|---|---|---|---|---|---|---|---|---|---|\n");
            for p in &self.pairs {
                let diff = p
                    .accuracy_diff
                    .map_or("–".to_string(), |d| format!("{:+.1} pp", 100.0 * d));
                let ratio = |r: Option<RatioCi>| {
                    r.map_or("–".to_string(), |r| {
                        format!("{:.3} [{:.3}, {:.3}]", r.ratio, r.lo, r.hi)
                    })
                };
                let _ = writeln!(
                    md,
                    "| {} vs {} | {} | {} | {} / {} | {:.4} | {} | {} | {} | {} | {} |",
                    md_cell(&p.other),
                    md_cell(&p.baseline),
                    p.n_paired,
                    diff,
                    p.only_baseline_correct,
                    p.only_other_correct,
                    p.mcnemar_p,
                    ratio(p.cost_ratio),
                    ratio(p.token_ratio),
                    ratio(p.latency_ratio),
                    ratio(p.forward_time_ratio),
                    p.wall_ratio.map_or("–".to_string(), |w| format!("{w:.3}")),
                );
            }
        }
        md
    }

    /// The runs as points of the accuracy-versus-tokens plane (runs without records
    /// are left out).
    pub fn points(&self) -> Vec<RunPoint> {
        self.runs
            .iter()
            .filter_map(|r| {
                Some(RunPoint {
                    label: r.label.clone(),
                    accuracy: r.accuracy?,
                    ci95: r.accuracy_ci95,
                    tokens_mean: r.cost_tokens_mean?,
                })
            })
            .collect()
    }
}

/// Writes `comparison.json`, `comparison.md` and `pareto.png`/`.svg` into `out_dir`.
pub fn write_comparison(
    out_dir: &Path,
    comparison: &Comparison,
) -> Result<Vec<PathBuf>, CompareError> {
    std::fs::create_dir_all(out_dir).map_err(|source| CompareError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let json_path = out_dir.join("comparison.json");
    let json = serde_json::to_string_pretty(comparison).map_err(CompareError::Serialize)?;
    std::fs::write(&json_path, json + "\n").map_err(|source| CompareError::Io {
        path: json_path.clone(),
        source,
    })?;
    let md_path = out_dir.join("comparison.md");
    let md = comparison.to_markdown() + "\n![accuracy vs tokens](pareto.png)\n";
    std::fs::write(&md_path, md).map_err(|source| CompareError::Io {
        path: md_path.clone(),
        source,
    })?;
    let mut written = vec![json_path, md_path];
    written.extend(plot::accuracy_vs_tokens(
        &comparison.points(),
        &out_dir.join("pareto"),
    )?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;

    fn run(label: &str, results: &[(&str, bool, u64)]) -> LoadedRun {
        let records: Vec<Record> = results
            .iter()
            .map(|&(id, correct, tokens)| record(id, correct, tokens))
            .collect();
        LoadedRun {
            dir: PathBuf::from(label),
            label: label.into(),
            summary: Summary::from_records(label, &records, 1.0),
            records,
        }
    }

    #[test]
    fn pairs_by_id_and_counts_discordant_pairs() {
        let baseline = run(
            "base",
            &[
                ("a", true, 100),
                ("b", true, 200),
                ("c", false, 300),
                ("x", true, 50),
            ],
        );
        let other = run(
            "short",
            &[
                ("c", true, 150),
                ("b", false, 100),
                ("a", true, 50),
                ("y", false, 1),
            ],
        );
        let comparison = compare(&[baseline, other], &CompareOptions::default());
        let p = &comparison.pairs[0];
        assert_eq!(p.n_paired, 3);
        assert_eq!(p.only_baseline_correct, 1);
        assert_eq!(p.only_other_correct, 1);
        assert_eq!(p.accuracy_baseline, Some(2.0 / 3.0));
        assert_eq!(p.accuracy_diff, Some(0.0));
        assert_eq!(p.mcnemar_p, 1.0);
        let ratio = p.token_ratio.unwrap();
        assert!((ratio.ratio - 300.0 / 600.0).abs() < 1e-12);
        assert!(ratio.lo <= ratio.ratio && ratio.ratio <= ratio.hi);
        assert_eq!(p.wall_ratio, None, "different problem sets");
    }

    #[test]
    fn wall_times_are_compared_only_over_the_same_problems() {
        let base = run("base", &[("a", true, 100), ("b", true, 200)]);
        let mut other = run("other", &[("b", true, 50), ("a", true, 50)]);
        other.summary.wall_s = 0.5;
        let comparison = compare(&[base, other], &CompareOptions::default());
        assert_eq!(comparison.pairs[0].wall_ratio, Some(0.5));
        assert_eq!(
            comparison.pairs[0].forward_time_ratio, None,
            "no engine times"
        );
    }

    #[test]
    fn pareto_front_is_marked_in_rows_and_markdown() {
        let a = run("a", &[("p", true, 100), ("q", true, 100)]);
        let b = run("b", &[("p", true, 300), ("q", true, 300)]);
        let c = run("c", &[("p", false, 10), ("q", true, 10)]);
        let comparison = compare(&[a, b, c], &CompareOptions::default());
        let front: Vec<bool> = comparison.runs.iter().map(|r| r.on_pareto_front).collect();
        assert_eq!(front, [true, false, true]);
        let md = comparison.to_markdown();
        assert!(md.contains("| a | 2 | 100.0% |"), "{md}");
        assert!(md.contains("| c vs a | 2 | -50.0 pp | 1 / 0 |"), "{md}");
        assert_eq!(comparison.points().len(), 3);
    }

    #[test]
    fn comparison_is_written_with_plot() {
        let dir = tempfile::tempdir().unwrap();
        let a = run("a", &[("p", true, 100)]);
        let b = run("b", &[("p", false, 50)]);
        let written =
            write_comparison(dir.path(), &compare(&[a, b], &CompareOptions::default())).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "comparison.json",
                "comparison.md",
                "pareto.png",
                "pareto.svg"
            ]
        );
    }

    #[test]
    fn loading_a_non_run_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_run(dir.path()),
            Err(CompareError::NotARun { .. })
        ));
    }
}
