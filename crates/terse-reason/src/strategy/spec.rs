//! Naming and configuring strategies: one representation for the command line
//! (`--strategy loop-guard+early-exit --strategy-opt every=16`), a TOML file (the one
//! `eval --strategy-config`, the server and a tuner read) and the JSON kept in run
//! records and cache keys.
//!
//! ```toml
//! strategy = "loop-guard+early-exit"   # stages in order; "none" for plain decoding
//! format = "auto"                      # auto | think | plain
//!
//! [early-exit]
//! every = 32
//! window = 2
//! ```

use super::budget::{Budget, BudgetForcing, BudgetOptions, ForcingOptions};
use super::concise_hint::{ConciseHint, HintOptions};
use super::early_exit::{EarlyExit, EarlyExitOptions, ProbeTrace, ProbeTraceOptions};
use super::loop_guard::{LoopGuard, LoopGuardOptions};
use super::prompts::{add_exemplars, add_system, ExemplarOptions, BE_BRIEF, CHAIN_OF_DRAFT};
use super::stop_boost::{StopBoost, StopBoostOptions};
use super::verify::{Verify, VerifyOptions};
use super::{Controller, FormatChoice, Needs, StrategyError};
use crate::adaptive::{AdaptiveOptions, PRESETS, THRESHOLD_OPTIONS};
use crate::consistency::ConsistencyOptions;
use crate::program::ProgramOptions;
use crate::refine::RefineOptions;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use terse_engine::ChatMessage;

/// One stage of a strategy with its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Stage {
    BeBrief,
    ChainOfDraft,
    ConciseExemplars(ExemplarOptions),
    Budget(BudgetOptions),
    BudgetForcing(ForcingOptions),
    EarlyExit(EarlyExitOptions),
    ProbeTrace(ProbeTraceOptions),
    StopBoost(StopBoostOptions),
    ConciseHint(HintOptions),
    LoopGuard(LoopGuardOptions),
    Verify(VerifyOptions),
    /// Draws several traces and votes (see [`crate::consistency`]); the other
    /// stages steer each trace.
    Consistency(ConsistencyOptions),
    /// Routes each problem to a preset strategy by its predicted difficulty (see
    /// [`crate::adaptive`]); stands alone in its chain.
    Adaptive(AdaptiveOptions),
    /// Asks for a program and runs it, with a fallback strategy (see
    /// [`crate::program`]); stands alone in its chain.
    Program(ProgramOptions),
    /// Drafts in parallel, distils them into a workspace and answers again (see
    /// [`crate::refine`]); stands alone in its chain.
    Refine(RefineOptions),
}

/// Every stage name, in the order `--help` lists them.
pub const STAGE_NAMES: &[&str] = &[
    "none",
    "be-brief",
    "chain-of-draft",
    "concise-exemplars",
    "budget",
    "budget-forcing",
    "early-exit",
    "probe-trace",
    "stop-boost",
    "concise-hint",
    "loop-guard",
    "verify",
    "consistency",
    "adaptive",
    "program",
    "refine",
];

/// Stages that answer with whole strategies of their own, so nothing may stand beside
/// them in a chain.
const STANDALONE: &[&str] = &["adaptive", "program", "refine"];

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::BeBrief => "be-brief",
            Stage::ChainOfDraft => "chain-of-draft",
            Stage::ConciseExemplars(_) => "concise-exemplars",
            Stage::Budget(_) => "budget",
            Stage::BudgetForcing(_) => "budget-forcing",
            Stage::EarlyExit(_) => "early-exit",
            Stage::ProbeTrace(_) => "probe-trace",
            Stage::StopBoost(_) => "stop-boost",
            Stage::ConciseHint(_) => "concise-hint",
            Stage::LoopGuard(_) => "loop-guard",
            Stage::Verify(_) => "verify",
            Stage::Consistency(_) => "consistency",
            Stage::Adaptive(_) => "adaptive",
            Stage::Program(_) => "program",
            Stage::Refine(_) => "refine",
        }
    }

    /// The stage `name` with `options` (a TOML table of overrides).
    fn build(name: &str, options: toml::Table) -> Result<Stage, StrategyError> {
        fn opts<T: DeserializeOwned>(name: &str, table: toml::Table) -> Result<T, StrategyError> {
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| StrategyError::BadOption {
                    strategy: name.into(),
                    message: e.message().to_string(),
                })
        }
        let no_options = |table: &toml::Table| match table.keys().next() {
            Some(key) => Err(StrategyError::BadOption {
                strategy: name.into(),
                message: format!("takes no options (got '{key}')"),
            }),
            None => Ok(()),
        };
        let stage = match name {
            "be-brief" => no_options(&options).map(|_| Stage::BeBrief)?,
            "chain-of-draft" => no_options(&options).map(|_| Stage::ChainOfDraft)?,
            "concise-exemplars" => Stage::ConciseExemplars(opts(name, options)?),
            "budget" => Stage::Budget(opts(name, options)?),
            "budget-forcing" => Stage::BudgetForcing(opts(name, options)?),
            "early-exit" => Stage::EarlyExit(opts(name, options)?),
            "probe-trace" => Stage::ProbeTrace(opts(name, options)?),
            "stop-boost" => Stage::StopBoost(opts(name, options)?),
            "concise-hint" => Stage::ConciseHint(opts(name, options)?),
            "loop-guard" => Stage::LoopGuard(opts(name, options)?),
            "verify" => Stage::Verify(opts(name, options)?),
            "consistency" => Stage::Consistency(opts(name, options)?),
            "adaptive" => Stage::Adaptive(adaptive_options(options)?),
            "program" => Stage::Program(program_options(options)?),
            "refine" => Stage::Refine(opts(name, options)?),
            other => {
                return Err(StrategyError::UnknownStrategy {
                    name: other.into(),
                    valid: STAGE_NAMES.join(", "),
                })
            }
        };
        stage.validate()?;
        Ok(stage)
    }

    /// The option names this stage takes.
    fn option_names(name: &str) -> Vec<String> {
        let keys = |v: Result<toml::Table, toml::ser::Error>| {
            v.map(|t| t.keys().cloned().collect()).unwrap_or_default()
        };
        match name {
            "concise-exemplars" => keys(toml::Table::try_from(ExemplarOptions::default())),
            "budget" => keys(toml::Table::try_from(BudgetOptions::default())),
            "budget-forcing" => keys(toml::Table::try_from(ForcingOptions::default())),
            "early-exit" => {
                let mut k = keys(toml::Table::try_from(EarlyExitOptions::default()));
                k.push("min_logprob".into());
                k
            }
            "probe-trace" => keys(toml::Table::try_from(ProbeTraceOptions::default())),
            "stop-boost" => {
                let mut k = keys(toml::Table::try_from(StopBoostOptions::default()));
                k.push("margin".into());
                k
            }
            "concise-hint" => keys(toml::Table::try_from(HintOptions::default())),
            "loop-guard" => keys(toml::Table::try_from(LoopGuardOptions::default())),
            "verify" => keys(toml::Table::try_from(VerifyOptions::default())),
            "consistency" => {
                let mut k = keys(toml::Table::try_from(ConsistencyOptions::default()));
                k.push("round".into());
                k
            }
            "adaptive" => THRESHOLD_OPTIONS
                .iter()
                .chain(PRESETS)
                .map(|s| s.to_string())
                .collect(),
            "program" => crate::program::OPTIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "refine" => keys(toml::Table::try_from(RefineOptions::default())),
            _ => Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), StrategyError> {
        let name = self.name();
        let range = |option: &str, value: String, ok: bool, range: &str| {
            if ok {
                Ok(())
            } else {
                Err(StrategyError::OutOfRange {
                    strategy: name.into(),
                    option: option.into(),
                    value,
                    range: range.into(),
                })
            }
        };
        match self {
            Stage::BeBrief | Stage::ChainOfDraft => Ok(()),
            Stage::Program(o) => range(
                "exemplars",
                o.exemplars.to_string(),
                o.exemplars <= crate::program::EXEMPLARS.len(),
                "0 to 4",
            ),
            Stage::ConciseExemplars(o) => range(
                "count",
                o.count.to_string(),
                (1..=super::EXEMPLARS.len()).contains(&o.count),
                "1 to 4",
            ),
            Stage::Budget(o) => {
                range(
                    "reasoning_tokens",
                    o.reasoning_tokens.to_string(),
                    o.reasoning_tokens >= 1,
                    "at least 1",
                )?;
                range(
                    "answer_tokens",
                    o.answer_tokens.to_string(),
                    o.answer_tokens >= 1,
                    "at least 1",
                )
            }
            Stage::BudgetForcing(o) => {
                range(
                    "max_tokens",
                    o.max_tokens.to_string(),
                    o.max_tokens > o.min_tokens,
                    "above min_tokens",
                )?;
                range(
                    "answer_tokens",
                    o.answer_tokens.to_string(),
                    o.answer_tokens >= 1,
                    "at least 1",
                )?;
                range(
                    "wait",
                    format!("{:?}", o.wait),
                    !o.wait.trim().is_empty(),
                    "non-empty text",
                )
            }
            Stage::EarlyExit(o) => {
                range("every", o.every.to_string(), o.every >= 1, "at least 1")?;
                range(
                    "window",
                    o.window.to_string(),
                    (1..=16).contains(&o.window),
                    "1 to 16",
                )?;
                range(
                    "probe_tokens",
                    o.probe_tokens.to_string(),
                    (1..=64).contains(&o.probe_tokens),
                    "1 to 64",
                )?;
                match o.min_logprob {
                    Some(l) => range(
                        "min_logprob",
                        l.to_string(),
                        l <= 0.0 && l.is_finite(),
                        "a log-probability ≤ 0",
                    ),
                    None => Ok(()),
                }
            }
            Stage::ProbeTrace(o) => {
                range("every", o.every.to_string(), o.every >= 1, "at least 1")?;
                range(
                    "probe_tokens",
                    o.probe_tokens.to_string(),
                    (1..=64).contains(&o.probe_tokens),
                    "1 to 64",
                )
            }
            Stage::StopBoost(o) => {
                range(
                    "boost",
                    o.boost.to_string(),
                    o.boost >= 1.0 && o.boost.is_finite(),
                    "≥ 1",
                )?;
                match o.margin {
                    Some(m) => range(
                        "margin",
                        m.to_string(),
                        m >= 0.0 && m.is_finite(),
                        "≥ 0 nats",
                    ),
                    None => Ok(()),
                }
            }
            Stage::ConciseHint(o) => {
                range(
                    "hint",
                    format!("{:?}", o.hint),
                    !o.hint.trim().is_empty(),
                    "non-empty text",
                )?;
                range(
                    "first_interval",
                    o.first_interval.to_string(),
                    o.first_interval >= 1,
                    "at least 1",
                )?;
                range(
                    "growth",
                    o.growth.to_string(),
                    (0.0..=10.0).contains(&o.growth),
                    "0 to 10",
                )?;
                range(
                    "max_interval",
                    o.max_interval.to_string(),
                    o.max_interval >= o.first_interval,
                    "at least first_interval",
                )
            }
            Stage::LoopGuard(o) => {
                range(
                    "ngram",
                    o.ngram.to_string(),
                    (2..=256).contains(&o.ngram),
                    "2 to 256",
                )?;
                range(
                    "min_repeat_tokens",
                    o.min_repeat_tokens.to_string(),
                    o.min_repeat_tokens >= 1,
                    "at least 1",
                )?;
                range(
                    "answer_tokens",
                    o.answer_tokens.to_string(),
                    o.answer_tokens >= 1,
                    "at least 1",
                )
            }
            Stage::Verify(o) => {
                range("every", o.every.to_string(), o.every >= 1, "at least 1")?;
                range(
                    "probe_tokens",
                    o.probe_tokens.to_string(),
                    (1..=16).contains(&o.probe_tokens),
                    "1 to 16",
                )?;
                range(
                    "question",
                    format!("{:?}", o.question),
                    !o.question.trim().is_empty(),
                    "non-empty text",
                )?;
                range(
                    "min_yes_prob",
                    o.min_yes_prob.to_string(),
                    o.min_yes_prob > 0.0 && o.min_yes_prob <= 1.0,
                    "above 0, at most 1",
                )
            }
            Stage::Refine(o) => {
                range(
                    "drafts",
                    o.drafts.to_string(),
                    (1..=16).contains(&o.drafts),
                    "1 to 16",
                )?;
                range(
                    "rounds",
                    o.rounds.to_string(),
                    (1..=8).contains(&o.rounds),
                    "1 to 8",
                )?;
                range(
                    "workspace_chars",
                    o.workspace_chars.to_string(),
                    (100..=20_000).contains(&o.workspace_chars),
                    "100 to 20000",
                )?;
                range(
                    "temperature",
                    o.temperature.to_string(),
                    o.temperature.is_finite()
                        && (o.temperature > 0.0 || (o.drafts == 1 && o.temperature == 0.0)),
                    "> 0 (0 only with one draft: greedy drafts would be identical)",
                )
            }
            Stage::Consistency(o) => {
                range(
                    "max_samples",
                    o.max_samples.to_string(),
                    (1..=64).contains(&o.max_samples),
                    "1 to 64",
                )?;
                range(
                    "threshold",
                    o.threshold.to_string(),
                    o.threshold > 0.5 && o.threshold < 1.0,
                    "between 0.5 and 1 (exclusive)",
                )?;
                // The window matters only to its rule (max_samples = 3 leaves the
                // default window of 5 to `beta` and `fixed`).
                range(
                    "window",
                    o.window.to_string(),
                    o.rule != crate::consistency::StopRule::Window
                        || (1..=o.max_samples).contains(&o.window),
                    "1 to max_samples",
                )?;
                range(
                    "temperature",
                    o.temperature.to_string(),
                    o.temperature > 0.0 && o.temperature.is_finite(),
                    "> 0 (identical greedy traces would vote alike)",
                )?;
                range(
                    "keep",
                    o.keep.to_string(),
                    o.keep > 0.0 && o.keep <= 1.0,
                    "above 0, at most 1 (the fraction of traces that vote)",
                )?;
                match o.round {
                    Some(r) => range("round", r.to_string(), r >= 1, "at least 1"),
                    None => Ok(()),
                }
            }
            Stage::Adaptive(o) => {
                range(
                    "easy_below",
                    o.easy_below.to_string(),
                    (0.0..=1.0).contains(&o.easy_below),
                    "0 to 1",
                )?;
                range(
                    "hard_above",
                    o.hard_above.to_string(),
                    (o.easy_below..=1.0).contains(&o.hard_above),
                    "easy_below to 1",
                )
            }
        }
    }

    fn controller(&self) -> Option<Box<dyn Controller>> {
        Some(match self {
            Stage::BeBrief
            | Stage::ChainOfDraft
            | Stage::ConciseExemplars(_)
            | Stage::Consistency(_)
            | Stage::Adaptive(_)
            | Stage::Program(_)
            | Stage::Refine(_) => return None,
            Stage::Budget(o) => Box::new(Budget::new(o)),
            Stage::BudgetForcing(o) => Box::new(BudgetForcing::new(o)),
            Stage::EarlyExit(o) => Box::new(EarlyExit::new(o)),
            Stage::ProbeTrace(o) => Box::new(ProbeTrace::new(o)),
            Stage::StopBoost(o) => Box::new(StopBoost::new(o)),
            Stage::ConciseHint(o) => Box::new(ConciseHint::new(o)),
            Stage::LoopGuard(o) => Box::new(LoopGuard::new(o)),
            Stage::Verify(o) => Box::new(Verify::new(o)),
        })
    }
}

/// A strategy: its stages in order (none = plain decoding) and the reasoning format.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StrategySpec {
    #[serde(default)]
    pub format: FormatChoice,
    #[serde(default)]
    pub stages: Vec<Stage>,
}

impl std::fmt::Display for StrategySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.stages.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.stages.iter().map(Stage::name).collect();
        f.write_str(&names.join("+"))
    }
}

/// The file form: `strategy = "a+b"`, `format`, and one table of options per stage
/// (any other key is reported as an option no stage claims).
#[derive(Deserialize)]
struct ConfigFile {
    strategy: Option<String>,
    #[serde(default)]
    format: FormatChoice,
    #[serde(flatten)]
    tables: toml::Table,
}

impl StrategySpec {
    /// The plain strategy: no stages.
    pub fn none() -> Self {
        StrategySpec::default()
    }

    /// From a chain (`loop-guard+early-exit`, or `none`) and `KEY=VALUE` options. A key
    /// is `STAGE.OPTION`, or just `OPTION` when one stage of the chain takes it;
    /// `format=think|plain|auto` sets the format. Values are TOML (`32`, `0.5`,
    /// `true`, `"text"`); anything else is taken as a string.
    pub fn parse(chain: &str, options: &[String]) -> Result<Self, StrategyError> {
        Self::build(chain, FormatChoice::Auto, toml::Table::new(), options)
    }

    /// From a TOML configuration (see the module documentation), with `chain` (if
    /// given) replacing its `strategy` and `options` overriding its tables.
    pub fn from_toml(
        text: &str,
        chain: Option<&str>,
        options: &[String],
    ) -> Result<Self, StrategyError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| StrategyError::Config(e.message().to_string()))?;
        let chain = chain
            .map(str::to_string)
            .or(file.strategy)
            .ok_or_else(|| StrategyError::Config("no `strategy = \"…\"` given".into()))?;
        Self::build(&chain, file.format, file.tables, options)
    }

    fn build(
        chain: &str,
        mut format: FormatChoice,
        mut tables: toml::Table,
        options: &[String],
    ) -> Result<Self, StrategyError> {
        let names: Vec<&str> = chain
            .split('+')
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "none")
            .collect();
        for name in &names {
            if !STAGE_NAMES.contains(name) {
                return Err(StrategyError::UnknownStrategy {
                    name: (*name).into(),
                    valid: STAGE_NAMES.join(", "),
                });
            }
        }
        if let Some(alone) = names.iter().find(|n| STANDALONE.contains(n)) {
            if let Some(other) = names.iter().find(|n| *n != alone) {
                let message = match *alone {
                    "adaptive" => format!(
                        "adaptive answers with whole strategies of its own: put '{other}' \
                         into its presets (easy, normal, hard), not beside it"
                    ),
                    "program" => format!(
                        "program answers with whole strategies of its own: put '{other}' \
                         into its fallback, not beside it"
                    ),
                    _ => format!("{alone} draws its own plain traces: run it without '{other}'"),
                };
                return Err(StrategyError::Config(message));
            }
        }
        for table in tables.keys() {
            if !names.contains(&table.as_str()) {
                return Err(StrategyError::UnclaimedOption {
                    option: table.clone(),
                    chain: chain.into(),
                });
            }
        }
        for option in options {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| StrategyError::NotKeyValue(option.clone()))?;
            let (key, value) = (key.trim(), value.trim());
            if key == "format" {
                format = toml::Value::String(value.into()).try_into().map_err(|_| {
                    StrategyError::OutOfRange {
                        strategy: chain.into(),
                        option: "format".into(),
                        value: value.into(),
                        range: "auto, think or plain".into(),
                    }
                })?;
                continue;
            }
            let (stage, option_name) = match key.split_once('.') {
                Some((stage, name)) if names.contains(&stage) => {
                    (stage.to_string(), name.to_string())
                }
                Some((stage, _)) => {
                    return Err(StrategyError::StageNotInChain {
                        option: key.into(),
                        stage: stage.into(),
                        chain: chain.into(),
                    })
                }
                None => {
                    let owners: Vec<&&str> = names
                        .iter()
                        .filter(|n| Stage::option_names(n).iter().any(|o| o == key))
                        .collect();
                    match owners.as_slice() {
                        [one] => (one.to_string(), key.to_string()),
                        [] => {
                            return Err(StrategyError::UnclaimedOption {
                                option: key.into(),
                                chain: chain.into(),
                            })
                        }
                        _ => {
                            return Err(StrategyError::AmbiguousOption {
                                option: key.into(),
                                chain: chain.into(),
                            })
                        }
                    }
                }
            };
            let parsed = toml_value(value);
            match tables
                .entry(stage)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => {
                    t.insert(option_name, parsed);
                }
                other => {
                    return Err(StrategyError::Config(format!(
                        "options of a stage must be a table, not {other}"
                    )))
                }
            }
        }
        let mut stages = Vec::with_capacity(names.len());
        for name in names {
            let table = match tables.remove(name) {
                Some(toml::Value::Table(t)) => t,
                Some(other) => {
                    return Err(StrategyError::Config(format!(
                        "[{name}] must be a table, not {other}"
                    )))
                }
                None => toml::Table::new(),
            };
            stages.push(Stage::build(name, table)?);
        }
        Ok(StrategySpec { format, stages })
    }

    /// What the strategy needs from its backend, and the stage that needs it.
    pub fn needs(&self) -> Vec<(&'static str, Needs)> {
        self.stages
            .iter()
            .filter_map(|s| s.controller().map(|c| (s.name(), c.needs())))
            .collect()
    }

    /// The conversation the model sees: prompt stages applied in order.
    pub fn prepare_messages(&self, messages: &[ChatMessage]) -> Vec<ChatMessage> {
        let mut messages = messages.to_vec();
        for stage in &self.stages {
            match stage {
                Stage::BeBrief => add_system(&mut messages, BE_BRIEF),
                Stage::ChainOfDraft => add_system(&mut messages, CHAIN_OF_DRAFT),
                Stage::ConciseExemplars(o) => add_exemplars(&mut messages, o),
                Stage::Program(o) => crate::program::program_messages(&mut messages, o),
                _ => {}
            }
        }
        messages
    }

    /// The steering stages, fresh for one sequence.
    pub fn controllers(&self) -> Vec<Box<dyn Controller>> {
        self.stages.iter().filter_map(Stage::controller).collect()
    }

    /// The `consistency` stage's options, when the strategy draws several traces.
    pub fn consistency(&self) -> Option<&ConsistencyOptions> {
        self.stages.iter().find_map(|s| match s {
            Stage::Consistency(o) => Some(o),
            _ => None,
        })
    }

    /// The `adaptive` stage's options, when the strategy routes by difficulty.
    pub fn adaptive(&self) -> Option<&AdaptiveOptions> {
        self.stages.iter().find_map(|s| match s {
            Stage::Adaptive(o) => Some(o),
            _ => None,
        })
    }

    /// The `program` stage's options, when the strategy asks for a program.
    pub fn program(&self) -> Option<&ProgramOptions> {
        self.stages.iter().find_map(|s| match s {
            Stage::Program(o) => Some(o),
            _ => None,
        })
    }

    /// The `refine` stage's options, when the strategy drafts and refines.
    pub fn refine(&self) -> Option<&RefineOptions> {
        self.stages.iter().find_map(|s| match s {
            Stage::Refine(o) => Some(o),
            _ => None,
        })
    }

    /// Whether a request of this strategy is one steered trace (not routed by
    /// difficulty, not several voting traces, not a program with a fallback, not
    /// drafts and a refinement): one that can stream as it decodes and run beside
    /// other requests as a sibling.
    pub fn is_single_trace(&self) -> bool {
        self.consistency().is_none()
            && self.adaptive().is_none()
            && self.program().is_none()
            && self.refine().is_none()
    }

    /// The most sequences one request of this strategy has in flight at once: a
    /// `consistency` round's traces, or the largest of `adaptive`'s presets.
    pub fn sequences_in_flight(&self) -> usize {
        if let Some(p) = self.program() {
            return p.fallback.sequences_in_flight();
        }
        if let Some(r) = self.refine() {
            return r.drafts;
        }
        match (self.adaptive(), self.consistency()) {
            (Some(a), _) => a
                .presets()
                .iter()
                .map(|p| p.sequences_in_flight())
                .max()
                .unwrap_or(1),
            (None, Some(c)) => c.round_size(),
            (None, None) => 1,
        }
    }

    /// The strategy of each trace: this one without its `consistency` stage.
    pub fn without_consistency(&self) -> StrategySpec {
        StrategySpec {
            format: self.format,
            stages: self
                .stages
                .iter()
                .filter(|s| !matches!(s, Stage::Consistency(_)))
                .cloned()
                .collect(),
        }
    }

    /// Whether any stage steers the decoding (otherwise the request runs unsteered).
    pub fn steers(&self) -> bool {
        self.stages.iter().any(|s| s.controller().is_some())
    }
}

/// A strategy inside another's options: a chain (`"be-brief"`) or a table in the file
/// form (`strategy = "…"` and its stages' tables).
fn nested_spec(value: toml::Value) -> Result<StrategySpec, StrategyError> {
    match value {
        toml::Value::String(chain) => StrategySpec::parse(&chain, &[]),
        toml::Value::Table(t) => {
            let file: ConfigFile = toml::Value::Table(t)
                .try_into()
                .map_err(|e: toml::de::Error| StrategyError::Config(e.message().to_string()))?;
            let chain = file
                .strategy
                .ok_or_else(|| StrategyError::Config("no `strategy = \"…\"` given".into()))?;
            StrategySpec::build(&chain, file.format, file.tables, &[])
        }
        other => Err(StrategyError::Config(format!(
            "must be a strategy chain or a table, not {other}"
        ))),
    }
}

/// `program`'s options: `fallback` a chain or a table (not itself a program), the
/// rest plain values.
fn program_options(mut table: toml::Table) -> Result<ProgramOptions, StrategyError> {
    let bad = |message: String| StrategyError::BadOption {
        strategy: "program".into(),
        message,
    };
    let fallback = table
        .remove("fallback")
        .map(|v| nested_spec(v).map_err(|e| bad(format!("fallback: {e}"))))
        .transpose()?;
    if fallback.as_ref().is_some_and(|f| f.program().is_some()) {
        return Err(bad("the fallback cannot itself be a program".into()));
    }
    let mut options: ProgramOptions = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    if let Some(min) = options.min_logprob {
        if min.is_nan() || min > 0.0 {
            return Err(bad(format!(
                "min_logprob must be a log-probability ≤ 0, got {min}"
            )));
        }
    }
    options.fallback = fallback.unwrap_or_default();
    Ok(options)
}

/// `adaptive`'s options: each preset a chain (`"be-brief"`) or a table in the file
/// form (`strategy = "…"` and its stages' tables), then the thresholds.
fn adaptive_options(mut table: toml::Table) -> Result<AdaptiveOptions, StrategyError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Thresholds {
        signal: Option<crate::adaptive::Signal>,
        easy_below: Option<f64>,
        hard_above: Option<f64>,
        probe: Option<std::path::PathBuf>,
    }
    let bad = |message: String| StrategyError::BadOption {
        strategy: "adaptive".into(),
        message,
    };
    let mut options = AdaptiveOptions::default();
    for preset in PRESETS {
        let Some(value) = table.remove(*preset) else {
            continue;
        };
        let spec = nested_spec(value).map_err(|e| bad(format!("preset '{preset}': {e}")))?;
        if spec.adaptive().is_some() {
            return Err(bad(format!("preset '{preset}' cannot itself be adaptive")));
        }
        match *preset {
            "easy" => options.easy = spec,
            "normal" => options.normal = spec,
            _ => options.hard = spec,
        }
    }
    let thresholds: Thresholds = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    if let Some(signal) = thresholds.signal {
        options.signal = signal;
    }
    if let Some(v) = thresholds.easy_below {
        options.easy_below = v;
    }
    if let Some(v) = thresholds.hard_above {
        options.hard_above = v;
    }
    options.probe = thresholds.probe;
    Ok(options)
}

/// A `--strategy-opt` value as TOML, or as a string when it is not valid TOML.
fn toml_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_with_options_parses_and_prints_back() {
        let spec = StrategySpec::parse(
            "loop-guard+early-exit",
            &[
                "every=16".into(),
                "loop-guard.ngram=8".into(),
                "format=think".into(),
            ],
        )
        .unwrap();
        assert_eq!(spec.to_string(), "loop-guard+early-exit");
        assert_eq!(spec.format, FormatChoice::Think);
        match &spec.stages[..] {
            [Stage::LoopGuard(l), Stage::EarlyExit(e)] => {
                assert_eq!(l.ngram, 8);
                assert_eq!(e.every, 16);
                assert_eq!(e.window, 2, "defaults stay");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            StrategySpec::parse("none", &[]).unwrap(),
            StrategySpec::none()
        );
        assert_eq!(StrategySpec::none().to_string(), "none");
    }

    #[test]
    fn an_unknown_strategy_lists_the_valid_ones() {
        let err = StrategySpec::parse("early-exit+fast", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown strategy 'fast'"), "{err}");
        assert!(
            err.contains("loop-guard") && err.contains("budget-forcing"),
            "{err}"
        );
    }

    #[test]
    fn unknown_ambiguous_and_out_of_range_options_are_named() {
        let err = StrategySpec::parse("budget", &["speed=3".into()]).unwrap_err();
        assert!(
            matches!(err, StrategyError::UnclaimedOption { .. }),
            "{err}"
        );
        let err =
            StrategySpec::parse("budget+loop-guard", &["answer_tokens=3".into()]).unwrap_err();
        assert!(
            matches!(err, StrategyError::AmbiguousOption { .. }),
            "{err}"
        );
        let err = StrategySpec::parse("early-exit", &["window=0".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'window' = 0") && err.contains("1 to 16"),
            "{err}"
        );
        let err = StrategySpec::parse("early-exit", &["every=soon".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("early-exit"), "{err}");
        let err = StrategySpec::parse("early-exit", &["every".into()]).unwrap_err();
        assert_eq!(err, StrategyError::NotKeyValue("every".into()));
        let err = StrategySpec::parse("be-brief", &["be-brief.x=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes no options"), "{err}");
        let err = StrategySpec::parse("none", &["format=fancy".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto, think or plain"), "{err}");
    }

    #[test]
    fn a_toml_file_configures_the_same_strategy() {
        let file =
            "strategy = \"loop-guard+early-exit\"\n[early-exit]\nevery = 16\nmin_logprob = -0.3\n";
        let from_file = StrategySpec::from_toml(file, None, &[]).unwrap();
        let from_flags = StrategySpec::parse(
            "loop-guard+early-exit",
            &["every=16".into(), "min_logprob=-0.3".into()],
        )
        .unwrap();
        assert_eq!(from_file, from_flags);
        let overridden = StrategySpec::from_toml(file, None, &["window=3".into()]).unwrap();
        assert!(
            matches!(&overridden.stages[1], Stage::EarlyExit(e) if e.window == 3 && e.every == 16)
        );
        let err = StrategySpec::from_toml(
            "strategy = \"budget\"\n[early-exit]\nevery = 1\n",
            None,
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, StrategyError::UnclaimedOption { .. }));
        let err =
            StrategySpec::from_toml("[budget]\nreasoning_tokens = 1\n", None, &[]).unwrap_err();
        assert!(err.to_string().contains("no `strategy"), "{err}");
    }

    #[test]
    fn the_json_form_round_trips() {
        let spec =
            StrategySpec::parse("concise-hint+early-exit", &["trigger=result".into()]).unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<StrategySpec>(&json).unwrap(), spec);
        assert!(json.contains("\"name\":\"early-exit\""), "{json}");
    }

    #[test]
    fn adaptive_presets_come_from_flags_or_from_file_tables() {
        let spec = StrategySpec::parse(
            "adaptive",
            &[
                "easy=be-brief".into(),
                "hard=loop-guard+early-exit".into(),
                "easy_below=0.3".into(),
                "signal=wrong".into(),
            ],
        )
        .unwrap();
        let a = spec.adaptive().expect("adaptive options");
        assert_eq!(a.easy.to_string(), "be-brief");
        assert_eq!(a.normal, StrategySpec::none());
        assert_eq!(a.hard.to_string(), "loop-guard+early-exit");
        assert_eq!(a.easy_below, 0.3);
        assert_eq!(a.hard_above, 0.5);
        assert_eq!(a.signal, crate::adaptive::Signal::Wrong);
        assert!(!spec.is_single_trace());
        assert!(!spec.steers(), "the presets steer, once routed");

        let file = "strategy = \"adaptive\"\n[adaptive]\nhard_above = 0.8\n\
                    [adaptive.hard]\nstrategy = \"consistency\"\n\
                    consistency = { max_samples = 3, rule = \"fixed\" }\n";
        let spec = StrategySpec::from_toml(file, None, &[]).unwrap();
        let a = spec.adaptive().unwrap();
        assert_eq!(a.hard_above, 0.8);
        assert_eq!(a.hard.consistency().map(|c| c.max_samples), Some(3));
        assert_eq!(spec.sequences_in_flight(), 3, "the widest preset's round");
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<StrategySpec>(&json).unwrap(), spec);
    }

    #[test]
    fn adaptive_refuses_bad_presets_thresholds_and_company() {
        let err = StrategySpec::parse("adaptive", &["easy=be-quick".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("preset 'easy'") && err.contains("unknown strategy 'be-quick'"),
            "{err}"
        );
        let err = StrategySpec::parse("adaptive", &["hard=adaptive".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot itself be adaptive"), "{err}");
        let err = StrategySpec::parse("adaptive", &["easy_below=0.6".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'hard_above'") && err.contains("easy_below to 1"),
            "{err}"
        );
        let err = StrategySpec::parse("adaptive", &["signal=vibes".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("adaptive") && err.contains("vibes"), "{err}");
        let err = StrategySpec::parse("adaptive", &["budget=3".into()]).unwrap_err();
        assert!(
            matches!(err, StrategyError::UnclaimedOption { .. }),
            "{err}"
        );
        let err = StrategySpec::parse("loop-guard+adaptive", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("put 'loop-guard' into its presets"), "{err}");
    }

    #[test]
    fn program_takes_a_fallback_chain_or_table_and_stands_alone() {
        let spec = StrategySpec::parse(
            "program",
            &["whole=true".into(), "fallback=loop-guard+budget".into()],
        )
        .unwrap();
        let p = spec.program().expect("program options");
        assert!(p.whole);
        assert_eq!(p.fallback.to_string(), "loop-guard+budget");
        assert!(!spec.is_single_trace());
        let file = "strategy = \"program\"\n[program.fallback]\nstrategy = \"consistency\"\n\
                    consistency = { max_samples = 3, round = 3 }\n";
        let spec = StrategySpec::from_toml(file, None, &[]).unwrap();
        assert_eq!(spec.sequences_in_flight(), 3);
        let err = StrategySpec::parse("program", &["fallback=program".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot itself be a program"), "{err}");
        let err = StrategySpec::parse("program", &["exemplars=5".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("exemplars") && err.contains("0 to 4"), "{err}");
        let err = StrategySpec::parse("program", &["tries=2".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tries") && err.contains("program"), "{err}");
        let err = StrategySpec::parse("program+loop-guard", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("put 'loop-guard' into its fallback"), "{err}");
        let spec = StrategySpec::parse("program", &["min_logprob=-1.5".into()]).unwrap();
        assert_eq!(spec.program().unwrap().min_logprob, Some(-1.5));
        let err = StrategySpec::parse("program", &["min_logprob=0.5".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("min_logprob must be a log-probability ≤ 0"),
            "{err}"
        );
    }

    #[test]
    fn refine_takes_its_options_stands_alone_and_checks_ranges() {
        let spec = StrategySpec::parse("refine", &["drafts=2".into(), "rounds=2".into()]).unwrap();
        let r = spec.refine().expect("refine options");
        assert_eq!((r.drafts, r.rounds), (2, 2));
        assert_eq!(spec.sequences_in_flight(), 2);
        assert!(!spec.is_single_trace() && !spec.steers());
        let err = StrategySpec::parse("refine", &["drafts=2".into(), "temperature=0".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("temperature") && err.contains("one draft"),
            "{err}"
        );
        assert!(
            StrategySpec::parse("refine", &["drafts=1".into(), "temperature=0".into()]).is_ok()
        );
        let err = StrategySpec::parse("refine", &["rounds=0".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rounds") && err.contains("1 to 8"), "{err}");
        let err = StrategySpec::parse("refine+loop-guard", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("run it without 'loop-guard'"), "{err}");
        let err = StrategySpec::parse("refine", &["depth=2".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("depth") && err.contains("refine"), "{err}");
    }

    #[test]
    fn prompt_stages_change_messages_and_do_not_steer() {
        let spec = StrategySpec::parse("be-brief+concise-exemplars", &["count=1".into()]).unwrap();
        assert!(!spec.steers());
        let m = spec.prepare_messages(&[ChatMessage::new("user", "Q")]);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].content, BE_BRIEF);
        assert!(StrategySpec::parse("loop-guard", &[]).unwrap().steers());
    }
}
