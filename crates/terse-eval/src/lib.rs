//! terse-eval: the measuring instrument of terse.
//!
//! terse exists to cut reasoning tokens without losing accuracy, so every claim is a
//! pair (accuracy, tokens) on the same problems. This crate holds everything needed to
//! produce such pairs without knowing anything about the engine:
//!
//! - [`dataset`]: GSM8K / generic JSONL loaders, `hf:` downloads, selection, stable ids;
//! - [`synthetic`]: a seeded generator of multi-step arithmetic word problems;
//! - [`extract`]: configurable answer extraction that reports which rule fired;
//! - [`grade`]: exact-rational answer comparison that never panics;
//! - [`stats`]: Wilson intervals, McNemar, paired bootstrap, Pareto fronts, eff@k;
//! - [`record`], [`cache`], [`run`]: crash-safe run directories and the eval loop,
//!   posing each problem as a `terse_reason::CompletionRequest` to any backend;
//! - [`report`], [`plot`], [`compare`]: summaries, markdown reports, PNG/SVG plots and
//!   problem-by-problem comparison of runs.

pub mod cache;
pub mod compare;
pub mod dataset;
pub mod extract;
pub mod grade;
pub mod plot;
pub mod probes;
pub mod record;
pub mod report;
pub mod run;
pub mod stats;
pub mod synthetic;
pub mod votes;

pub use dataset::{LineIssue, Problem};
pub use extract::{extract, ExtractOptions, Extraction, Rule};
pub use grade::{grade, grade_text, GradeOptions, GradeResult};
pub use record::Record;
pub use report::Summary;
pub use run::{run_eval, RunConfig};
